"""Published assets in upstream's OCI cache format: one `application/data` layer with the asset's
bytes, tagged by the asset's build key, cosign-signed; pushed once per key, verified on the way back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from imagefactory.config import Config
from imagefactory.errors import FactoryError
from imagefactory.oci import media
from imagefactory.oci.credentials import registry_credentials
from imagefactory.oci.digest import sha256_bytes
from imagefactory.oci.model import Descriptor
from imagefactory.oci.registry import RegistryTarget
from imagefactory.publish.content import ContentStore
from imagefactory.publish.receipts import failed
from imagefactory.publish.sidecars import load_signing_key
from imagefactory.signing.cosign import sign_image
from imagefactory.signing.keys import PrivateKey
from imagefactory.signing.policy import Verifier

LAYER_TYPE = "application/data"


def cache_manifest(layer_digest: str, size: int) -> tuple[bytes, bytes]:
    """go-containerregistry's empty.Image plus one layer: (config bytes, Docker v2 manifest bytes)."""
    config = json.dumps(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "config": {},
        },
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media.DOCKER_MANIFEST,
            "config": {
                "mediaType": media.DOCKER_CONFIG,
                "size": len(config),
                "digest": sha256_bytes(config),
            },
            "layers": [{"mediaType": LAYER_TYPE, "size": size, "digest": layer_digest}],
        },
        separators=(",", ":"),
    ).encode()
    return config, manifest


def _verified(
    target: RegistryTarget,
    repository: str,
    tag: str,
    *,
    layer_digest: str,
    key: PrivateKey,
    ref: str,
) -> Descriptor | None:
    """The cached entry if the tag exists, holds this layer and its signature verifies, else None."""
    try:
        descriptor, data = target.get_manifest(repository, tag)
    except FactoryError:
        return None
    layers = json.loads(data).get("layers", [])
    if [entry.get("digest") for entry in layers] != [layer_digest]:
        return None
    try:
        Verifier.with_public_key(key.public_key()).verify(
            target, repository, descriptor.digest, ref
        )
    except FactoryError:
        return None
    return descriptor


def push_cached(
    config: Config, target: RegistryTarget, tag: str, *, hex_digest: str, size: int, key: PrivateKey
) -> dict[str, Any]:
    assert config.registry is not None
    repository = config.registry.repository(config.publish.cache_repository)
    ref = f"{config.registry.host}/{repository}"
    layer = f"sha256:{hex_digest}"
    found = _verified(target, repository, tag, layer_digest=layer, key=key, ref=ref)
    if found is not None:
        return {"reference": f"{ref}:{tag}@{found.digest}", "pushed": False}
    blob = ContentStore(config).path(hex_digest)
    target.push_blob(repository, blob, layer)
    image_config, manifest = cache_manifest(layer, size)
    target.push_blob_bytes(repository, image_config)
    descriptor = target.put_manifest(repository, manifest, media.DOCKER_MANIFEST)
    sign_image(target, repository, descriptor, key, ref)
    target.put_manifest(repository, manifest, media.DOCKER_MANIFEST, tag=tag)
    if _verified(target, repository, tag, layer_digest=layer, key=key, ref=ref) is None:
        raise FactoryError(f"{ref}:{tag}: the pushed cache entry does not verify")
    return {"reference": f"{ref}:{tag}@{descriptor.digest}", "pushed": True}


def cache_receipt(config: Config, signed: Mapping[str, Any]) -> dict[str, Any]:
    """The signed receipt plus where its asset is in the registry's cache."""
    if signed.get("status") != "ok" or "buildKey" not in signed or config.registry is None:
        return dict(signed)
    registry = config.registry
    try:
        key = load_signing_key(config.publish_signing_key, str(config.path))
        username, password = registry.username, registry.password()
        if username is None:
            username, password = registry_credentials(registry.host) or (None, None)
        with RegistryTarget(
            registry.host, insecure=registry.insecure, username=username, password=password
        ) as target:
            _, entry = next(
                (p, e) for p, e in signed["files"].items() if "sha512" in e
            )  # the asset itself, not a sidecar
            cached = push_cached(
                config,
                target,
                signed["buildKey"],
                hex_digest=entry["sha256"],
                size=entry["size"],
                key=key,
            )
        return {**signed, "cache": cached}
    except Exception as exc:
        return failed(f"cache push of {next(iter(signed['files']), '?')}", exc)
