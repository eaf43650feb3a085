"""Copying an image or index between any two targets with its bytes, hence digests, unchanged.

Children first, then the top manifest and its tag; blobs already present are skipped.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from imagefactory.oci.model import Descriptor, manifest_media_type, parse_manifest
from imagefactory.oci.pull import image_name
from imagefactory.oci.target import Target


def _copy_blobs(src: Target, dst: Target, repository: str, obj: dict[str, Any], what: str) -> None:
    descs = []
    if "config" in obj:
        descs.append(Descriptor.from_json(obj["config"]))
    descs.extend(Descriptor.from_json(layer) for layer in obj.get("layers") or [])
    for desc in descs:
        if dst.has_blob(repository, desc.digest):
            continue
        with tempfile.TemporaryDirectory(prefix="blob-") as tmp:
            path = Path(tmp) / "blob"
            src.fetch_blob(repository, desc.digest, path)
            dst.push_blob(repository, path, desc.digest)


def copy_manifest(
    src: Target, dst: Target, repository: str, reference: str, tag: str | None = None
) -> Descriptor:
    """Copy the manifest at `reference` with everything it references; tag it if `tag`."""
    what = image_name(src, repository, reference)
    desc, data = src.get_manifest(repository, reference)
    obj = parse_manifest(data, what)
    for child in obj.get("manifests") or []:
        child_desc = Descriptor.from_json(child)
        copy_manifest(src, dst, repository, child_desc.digest)
    _copy_blobs(src, dst, repository, obj, what)
    media_type = desc.media_type or manifest_media_type(obj, what)
    return dst.put_manifest(repository, data, media_type, tag=tag)


def copy_image(src: Target, dst: Target, repository: str, tag: str) -> Descriptor:
    """Copy the image or index tagged `tag` in `repository` from src to dst under the same tag."""
    return copy_manifest(src, dst, repository, tag, tag=tag)
