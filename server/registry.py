"""The /v2 registry frontend for installer pulls: upstream's route grammar, answered from the
published tree's read-only `v2/` (manifests by tag or digest, blobs by digest).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from imagefactory.errors import InvalidInput, NotFound
from imagefactory.platforms import get_platform
from server.assets import Assets
from server.catalog import Catalog
from server.schematics import Schematics
from server.web import FileResponse, Response

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


def check_image(image: str) -> None:
    """installer, installer-secureboot, <platform>-installer[-secureboot]; else upstream's 400."""
    base = image.removesuffix("-secureboot")
    if base == "installer":
        return
    platform, sep, rest = base.rpartition("-")
    if sep and rest == "installer":
        try:
            get_platform(platform)
            return
        except InvalidInput:
            pass
    raise InvalidInput(f"invalid image: {image}")


class Registry:
    def __init__(self, assets: Assets, schematics: Schematics, catalog: Catalog) -> None:
        self.assets = assets
        self.schematics = schematics
        self.catalog = catalog

    def ping(self) -> Response:
        return Response(b"", headers=dict(API_HEADERS))

    def _target(self, path: str) -> tuple[str, str, str, str]:
        parts = path.split("/")
        if len(parts) != 4 or parts[2] not in {"manifests", "blobs"}:
            raise NotFound(f'unknown registry path: "{path}"')
        image, schematic_id, kind, reference = parts
        check_image(image)
        self.schematics.find(schematic_id)
        if reference == "latest" and kind == "manifests":
            stable = [v for v in self.catalog.versions() if not v.is_prerelease]
            if not stable:
                raise NotFound("no stable version is available")
            reference = stable[-1].tag
        if not (DIGEST.fullmatch(reference) or (kind == "manifests" and TAG.fullmatch(reference))):
            raise InvalidInput(f"invalid reference: {reference}")
        return image, schematic_id, kind, reference

    def resolve(self, path: str) -> Response | FileResponse:
        image, schematic_id, kind, reference = self._target(path)
        relative = f"v2/{image}/{schematic_id}/{kind}/{reference}"
        found = self.assets.public_file(relative)
        if found is None:
            raise NotFound(f"{kind.removesuffix('s')} unknown: {image}/{schematic_id}:{reference}")
        if kind == "blobs":
            headers = {**API_HEADERS, "Docker-Content-Digest": reference}
            return FileResponse(found, "application/octet-stream", headers=headers)
        return self._manifest(found)

    def _manifest(self, path: Path) -> Response:
        data = path.read_bytes()  # manifests are small JSON documents
        try:
            media_type = str(json.loads(data).get("mediaType") or OCI_INDEX)
        except (ValueError, AttributeError):
            raise NotFound("manifest unknown") from None
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return Response(
            data,
            content_type=media_type,
            headers={**API_HEADERS, "Docker-Content-Digest": digest, "ETag": f'"{digest}"'},
        )
