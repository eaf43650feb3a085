"""Catalog files of the sample release: `image-digests`, `descriptions.yaml`, `overlays.yaml`.

Written in upstream's formats; the registry part of each reference is the release's origin.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from imagefactory.sample import tree

# The registry named in catalogs and signatures of a release written as an OCI layout (RFC 6761:
# never resolves). A pushed release names its registry instead. Readers strip it and pull
# `<namespace>/siderolabs/<name>@<digest>` from their configured source, as for any mirror.
LAYOUT_ORIGIN = "registry.sample.invalid"


@dataclass(frozen=True)
class CatalogImage:
    """One image a catalog lists: repository path (`siderolabs/...`), tag, index digest."""

    repository: str
    tag: str
    digest: str
    author: str = ""
    description: str = ""

    def line(self, origin: str) -> str:
        return f"{origin}/{self.repository}:{self.tag}@{self.digest}"


def image_digests(origin: str, images: Iterable[CatalogImage]) -> str:
    """One `<origin>/siderolabs/<name>:<tag>@sha256:<hex>` line per extension, sorted."""
    return "".join(f"{line}\n" for line in sorted(image.line(origin) for image in images))


def descriptions_yaml(origin: str, images: Iterable[CatalogImage]) -> str:
    """A map keyed by the full image-digests line -> {author, description}."""
    # Plain block keys as upstream writes them (PyYAML would use `? ` for keys over 128 chars).
    out = []
    for image in sorted(images, key=lambda i: i.line(origin)):
        value = {"author": image.author, "description": image.description}
        body = yaml.safe_dump(value, sort_keys=False, width=1000)
        out.append(f"{image.line(origin)}:\n" + textwrap.indent(body, "  "))
    return "".join(out)


@dataclass(frozen=True)
class CatalogOverlay:
    name: str
    image: CatalogImage


def overlays_yaml(origin: str, overlays: Iterable[CatalogOverlay]) -> str:
    """`overlays: [{name, image: <origin>/siderolabs/sbc-*:<tag>, digest}]`, sorted by name."""
    listed = [
        {
            "name": overlay.name,
            "image": f"{origin}/{overlay.image.repository}:{overlay.image.tag}",
            "digest": overlay.image.digest,
        }
        for overlay in sorted(overlays, key=lambda o: o.name)
    ]
    return yaml.safe_dump({"overlays": listed}, sort_keys=False, width=1000)


def extensions_catalog_entries(origin: str, images: Iterable[CatalogImage]) -> list[tree.Entry]:
    images = list(images)
    return [
        tree.file("image-digests", image_digests(origin, images)),
        tree.file("descriptions.yaml", descriptions_yaml(origin, images)),
    ]


def overlays_catalog_entries(origin: str, overlays: Iterable[CatalogOverlay]) -> list[tree.Entry]:
    return [tree.file("overlays.yaml", overlays_yaml(origin, overlays))]
