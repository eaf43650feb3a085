"""Reading images: resolve a reference to one platform's manifest, config and layers, and unpack.

Every byte read is checked against its digest before it is trusted or extracted.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from imagefactory.errors import BuildError, InvalidInput, NotFound
from imagefactory.oci import media
from imagefactory.oci.decompress import decompressed
from imagefactory.oci.model import (
    Descriptor,
    check_reference,
    check_repository,
    is_digest,
    parse_manifest,
)
from imagefactory.oci.target import Target
from imagefactory.oci.tarsafe import apply_layer
from imagefactory.store import Store

MAX_CONFIG_BYTES = 16 << 20
UNPACKABLE = frozenset(
    {media.OCI_LAYER_GZIP, media.OCI_LAYER_TAR, media.DOCKER_LAYER_GZIP, media.OCI_LAYER_ZSTD}
)


@dataclass(frozen=True)
class PulledImage:
    reference: str
    descriptor: Descriptor
    manifest: Mapping[str, Any]
    config: Mapping[str, Any]
    layers: tuple[Descriptor, ...]
    repository: str = ""
    index: Descriptor | None = None


def image_name(target: Target, repository: str, reference: str) -> str:
    return f"{target.name}/{repository}{'@' if is_digest(reference) else ':'}{reference}"


def _descriptors(obj: Mapping[str, Any], key: str, what: str) -> list[Descriptor]:
    items = obj.get(key)
    if not isinstance(items, list):
        raise InvalidInput(f"{what}: {key} must be a list")
    try:
        return [Descriptor.from_json(item) for item in items]
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None


def _read_config(target: Target, repository: str, desc: Descriptor, what: str) -> dict[str, Any]:
    if desc.size > MAX_CONFIG_BYTES:
        raise InvalidInput(f"{what}: config of {desc.size} bytes is too large")
    with target.open_blob(repository, desc.digest) as blob:
        data = blob.read()
    if len(data) != desc.size:
        raise BuildError(f"{what}: config is {len(data)} bytes, manifest says {desc.size}")
    return parse_manifest(data, f"{what}: config")


def pull_image(target: Target, repository: str, reference: str, arch: str = "amd64") -> PulledImage:
    """Follow an index to the linux/<arch> manifest; read and verify its manifest and config."""
    check_repository(repository)
    check_reference(reference)
    what = image_name(target, repository, reference)
    desc, data = target.get_manifest(repository, reference)
    obj = parse_manifest(data, what)
    index = None
    if desc.media_type in media.INDEX_TYPES or "manifests" in obj:
        entries = _descriptors(obj, "manifests", what)
        chosen = [
            e
            for e in entries
            if e.platform is not None
            and e.platform.os == "linux"
            and e.platform.architecture == arch
        ]
        if not chosen:
            have = ", ".join(str(e.platform) for e in entries if e.platform) or "no platforms"
            raise NotFound(f"{what}: no linux/{arch} image (has {have})")
        index = desc
        desc, data = target.get_manifest(repository, chosen[0].digest)
        obj = parse_manifest(data, f"{what} (linux/{arch})")
        desc = Descriptor(desc.media_type, desc.digest, desc.size, chosen[0].platform)
    if desc.media_type not in media.IMAGE_MANIFEST_TYPES:
        raise InvalidInput(f"{what}: not an image manifest (media type {desc.media_type})")
    try:
        config_desc = Descriptor.from_json(obj.get("config"))
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: config: {exc}") from None
    layers = tuple(_descriptors(obj, "layers", what))
    config = _read_config(target, repository, config_desc, what)
    config_arch = config.get("architecture")
    if index is None and isinstance(config_arch, str) and config_arch and config_arch != arch:
        raise NotFound(f"{what}: is a linux/{config_arch} image, not linux/{arch}")
    return PulledImage(
        reference=what,
        descriptor=desc,
        manifest=MappingProxyType(obj),
        config=MappingProxyType(config),
        layers=layers,
        repository=repository,
        index=index,
    )


def unpack_image(
    target: Target, image: PulledImage, dest: Path, store: Store | None = None
) -> None:
    """Apply the image's layers in order onto dest; each layer is verified before extraction.

    Without a store, layers pass through a temporary one. On error dest is incomplete: discard it.
    """
    if not image.repository:
        raise InvalidInput(f"{image.reference}: PulledImage has no repository to fetch layers from")
    repository = image.repository
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if store is None:
            store = Store(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="layers-"))))
        for layer in image.layers:
            what = f"{image.reference}: layer {layer.digest}"
            if layer.media_type not in UNPACKABLE:
                raise BuildError(f"{what}: media type {layer.media_type} is not a layer tar")
            path = store.fetch(target, repository, layer.digest)  # compressed digest checked
            with path.open("rb") as f, decompressed(f, layer.media_type, what) as plain:
                apply_layer(plain, dest, what)
