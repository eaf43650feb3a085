"""Cosign signatures in an OCI target: the `sha256-<hex>.sig` manifest, sign, attach and fetch.

Layout, media types and annotations are cosign's, so cosign and containers/image read them as theirs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from imagefactory.errors import FactoryError, InvalidInput, NotFound
from imagefactory.oci import media
from imagefactory.oci.digest import check_digest, sha256_bytes
from imagefactory.oci.model import Descriptor, canonical_json, parse_manifest
from imagefactory.oci.target import Target
from imagefactory.signing import payload as simple

SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
# go-containerregistry's zero time, which cosign leaves in the signature image config
ZERO_TIME = "0001-01-01T00:00:00Z"
MAX_PAYLOAD_BYTES = 1 << 20


class LayerError(ValueError):
    """One signature layer is unusable; the message says why (collected, not raised to users)."""


@dataclass(frozen=True)
class Signature:
    """One cosign signature: the payload, its DER signature and, when keyless, cert/chain/bundle."""

    payload: bytes
    signature: bytes
    certificate: bytes | None = None
    chain: bytes | None = None
    bundle: str | None = None

    def annotations(self) -> dict[str, str]:
        # Go marshals cosign's annotation map with sorted keys.
        out = {SIGNATURE_ANNOTATION: base64.b64encode(self.signature).decode()}
        if self.certificate is not None:
            out[CERTIFICATE_ANNOTATION] = self.certificate.decode()
        if self.chain is not None:
            out[CHAIN_ANNOTATION] = self.chain.decode()
        if self.bundle is not None:
            out[BUNDLE_ANNOTATION] = self.bundle
        return dict(sorted(out.items()))

    @classmethod
    def from_layer(cls, payload_bytes: bytes, annotations: Mapping[str, str]) -> Signature:
        encoded = annotations.get(SIGNATURE_ANNOTATION)
        if encoded is None:
            raise LayerError(f"no {SIGNATURE_ANNOTATION} annotation")
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise LayerError(f"{SIGNATURE_ANNOTATION} is not base64") from exc
        certificate = annotations.get(CERTIFICATE_ANNOTATION)
        chain = annotations.get(CHAIN_ANNOTATION)
        return cls(
            payload=payload_bytes,
            signature=signature,
            certificate=certificate.encode() if certificate else None,
            chain=chain.encode() if chain else None,
            bundle=annotations.get(BUNDLE_ANNOTATION) or None,
        )


def signature_tag(digest: str) -> str:
    """The tag cosign stores the signatures of `digest` under."""
    return check_digest(digest).replace(":", "-", 1) + ".sig"


def sign(key: ec.EllipticCurvePrivateKey, digest: str, docker_reference: str) -> Signature:
    """A key-pair signature of `digest` as pushed to `docker_reference` (its tag is dropped)."""
    payload_bytes = simple.encode(docker_reference, digest)
    return Signature(payload_bytes, key.sign(payload_bytes, ec.ECDSA(hashes.SHA256())))


def signature_config(layers: Sequence[Descriptor]) -> bytes:
    """The image config of a `.sig` manifest; payloads are stored uncompressed, so diff_id = digest."""
    return canonical_json(
        {
            "architecture": "",
            "config": {},
            "created": ZERO_TIME,
            "history": [{"created": ZERO_TIME} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        }
    )


def signature_manifest(config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
    )


def signature_layers(target: Target, repository: str, digest: str) -> list[Descriptor] | None:
    """The layer descriptors of the `.sig` manifest of `digest`, or None when it has none."""
    tag = signature_tag(digest)
    try:
        _, data = target.get_manifest(repository, tag)
    except NotFound:
        return None
    what = f"{target.name}/{repository}:{tag}"
    manifest = parse_manifest(data, what)
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise InvalidInput(f"{what}: signature manifest has no layers list")
    return [Descriptor.from_json(layer) for layer in layers]


def attach(target: Target, repository: str, digest: str, signature: Signature) -> Descriptor:
    """Add `signature` to the `.sig` manifest of `digest` (created if absent); returns the manifest."""
    tag = signature_tag(digest)
    payload_digest = target.push_blob_bytes(repository, signature.payload)
    layer = Descriptor(
        media_type=SIMPLESIGNING_MEDIA_TYPE,
        digest=payload_digest,
        size=len(signature.payload),
        annotations=signature.annotations(),
    )
    layers = signature_layers(target, repository, digest) or []
    if any(_same_layer(layer, existing) for existing in layers):
        return target.resolve(repository, tag)
    layers.append(layer)
    config_bytes = signature_config(layers)
    config_digest = target.push_blob_bytes(repository, config_bytes)
    config = Descriptor(media.OCI_CONFIG, config_digest, len(config_bytes))
    return target.put_manifest(
        repository, signature_manifest(config, layers), media.OCI_MANIFEST, tag=tag
    )


def _same_layer(a: Descriptor, b: Descriptor) -> bool:
    return (a.media_type, a.digest, dict(a.annotations or {})) == (
        b.media_type,
        b.digest,
        dict(b.annotations or {}),
    )


def read_layer(target: Target, repository: str, layer: Descriptor) -> Signature:
    """The signature stored in one `.sig` layer; LayerError says why it is unusable."""
    if layer.media_type != SIMPLESIGNING_MEDIA_TYPE:
        raise LayerError(f"media type {layer.media_type!r} is not {SIMPLESIGNING_MEDIA_TYPE!r}")
    if layer.size > MAX_PAYLOAD_BYTES:
        raise LayerError(f"payload of {layer.size} bytes is larger than {MAX_PAYLOAD_BYTES}")
    try:
        with target.open_blob(repository, layer.digest) as stream:
            data = stream.read(MAX_PAYLOAD_BYTES + 1)
            stream.read()  # reach EOF so the target's own digest check runs
    except NotFound as exc:
        raise LayerError(f"payload blob is missing: {exc}") from exc
    except (FactoryError, OSError) as exc:
        raise LayerError(f"payload blob unreadable: {exc}") from exc
    if sha256_bytes(data) != layer.digest or len(data) != layer.size:
        raise LayerError(f"payload blob does not match its digest {layer.digest}")
    return Signature.from_layer(data, layer.annotations or {})


def _children(target: Target, repository: str, descriptor: Descriptor) -> list[Descriptor]:
    _, data = target.get_manifest(repository, descriptor.digest)
    index: dict[str, Any] = parse_manifest(data, f"{target.name}/{repository}@{descriptor.digest}")
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise InvalidInput(
            f"{target.name}/{repository}@{descriptor.digest}: index has no manifests"
        )
    return [Descriptor.from_json(entry) for entry in entries]


def sign_image(
    target: Target,
    repository: str,
    descriptor: Descriptor,
    key: ec.EllipticCurvePrivateKey,
    docker_reference: str,
) -> list[Descriptor]:
    """Sign an image and, for an index, every manifest in it (`cosign sign --recursive`).

    containers/image checks the policy on each platform manifest it copies, not on the index,
    so both must be signed. Returns the descriptors that were signed, the top one first.
    """
    signed = [descriptor]
    if descriptor.media_type in media.INDEX_TYPES:
        for child in _children(target, repository, descriptor):
            if child.media_type in media.MANIFEST_TYPES:
                signed.extend(sign_image(target, repository, child, key, docker_reference))
    else:
        # Nothing else gets signed, but fail early for a digest the target doesn't hold.
        target.resolve(repository, descriptor.digest)
    attach(target, repository, descriptor.digest, sign(key, descriptor.digest, docker_reference))
    return signed
