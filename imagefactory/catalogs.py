"""Upstream's catalogs, read: `image-digests` + `descriptions.yaml` (extensions), `overlays.yaml`.

Formats are siderolabs/extensions and siderolabs/overlays release images, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from imagefactory.errors import InvalidInput

# Renamed official extensions: a schematic naming the old one gets the new one (upstream's table).
EXTENSION_ALIASES: dict[str, str] = {
    f"siderolabs/{old}": f"siderolabs/{new}"
    for old, new in {
        "v4l-uvc": "v4l-uvc-drivers",
        "usb-modem": "usb-modem-drivers",
        "gasket": "gasket-driver",
        "talos-vmtoolsd": "vmtoolsd-guest-agent",
        "xe-guest-utilities": "xen-guest-agent",
        "nvidia-container-toolkit": "nvidia-container-toolkit-lts",
        "nvidia-open-gpu-kernel-modules": "nvidia-open-gpu-kernel-modules-lts",
        "nonfree-kmod-nvidia": "nonfree-kmod-nvidia-lts",
        "nvidia-fabricmanager": "nvidia-fabric-manager-lts",
        "i915-ucode": "i915",
        "amdgpu-firmware": "amdgpu",
    }.items()
}


@dataclass(frozen=True)
class ImageLine:
    """One `registry/repository:tag@digest` reference, split."""

    registry: str
    repository: str
    tag: str
    digest: str

    @classmethod
    def parse(cls, text: str, *, what: str) -> ImageLine:
        tagged, _, digest = text.partition("@")
        if digest and not (digest.startswith("sha256:") and len(digest) == 71):
            raise InvalidInput(f"{what}: bad digest in {text!r}")
        name, colon, tag = tagged.rpartition(":")
        if not colon or "/" in tag or not name:
            raise InvalidInput(f"{what}: {tagged!r} is not a tagged image reference")
        registry, slash, repository = name.partition("/")
        if not slash or not ("." in registry or ":" in registry or registry == "localhost"):
            registry, repository = "docker.io", name
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)


@dataclass(frozen=True)
class ExtensionEntry:
    name: str  # repository path, e.g. siderolabs/iscsi-tools: the name schematics use
    image: ImageLine
    author: str
    description: str

    @property
    def ref(self) -> str:
        return f"{self.image.registry}/{self.image.repository}:{self.image.tag}"


@dataclass(frozen=True)
class OverlayEntry:
    name: str  # e.g. rpi_generic
    image: ImageLine  # e.g. ghcr.io/siderolabs/sbc-raspberrypi:v0.1.0, digest from `digest:`

    @property
    def ref(self) -> str:
        return f"{self.image.registry}/{self.image.repository}:{self.image.tag}"


def parse_extensions(image_digests: str, descriptions: str | None) -> tuple[ExtensionEntry, ...]:
    """Lines without `@` are skipped, as upstream does; descriptions are keyed by the whole line."""
    described: dict[str, Any] = {}
    if descriptions:
        try:
            loaded = yaml.safe_load(descriptions)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"descriptions.yaml: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise InvalidInput("descriptions.yaml: expected a map of image references")
        described = loaded
    entries = []
    for raw_line in image_digests.splitlines():
        line = raw_line.strip()
        if "@" not in line:
            continue
        image = ImageLine.parse(line, what="image-digests")
        info = described.get(line) or {}
        entries.append(
            ExtensionEntry(
                name=image.repository,
                image=image,
                author=str(info.get("author", "")),
                description=str(info.get("description", "")),
            )
        )
    if not entries:
        raise InvalidInput("image-digests: no extension references found")
    return tuple(entries)


def parse_overlays(overlays_yaml: str) -> tuple[OverlayEntry, ...]:
    try:
        loaded = yaml.safe_load(overlays_yaml)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"overlays.yaml: not valid YAML: {exc}") from exc
    items = loaded.get("overlays") if isinstance(loaded, dict) else None
    if not isinstance(items, list):
        raise InvalidInput("overlays.yaml: expected `overlays:` with a list")
    entries = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not {"name", "image", "digest"} <= item.keys():
            raise InvalidInput(f"overlays.yaml: overlays[{index}] needs name, image and digest")
        image = ImageLine.parse(f"{item['image']}@{item['digest']}", what="overlays.yaml")
        entries.append(OverlayEntry(name=str(item["name"]), image=image))
    return tuple(entries)


def resolve_extension_name(name: str) -> str:
    return EXTENSION_ALIASES.get(name, name)
