"""The /v2 registry frontend for installer pulls, with upstream's route grammar.

With a `registry:` configured, a tag is resolved by a worker process (the installer pushed, signed
and verified there, built first if missing or unverifiable) and answered 307 to the registry by
digest; without one, manifests and blobs come from the published tree's read-only `v2/`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from imagefactory.errors import BuildError, InvalidInput, NotFound
from imagefactory.platforms import get_platform
from server.assets import Assets, parse_version
from server.builds import Builds, Job
from server.catalog import Catalog
from server.schematics import Schematics
from server.web import FileResponse, Redirect, Response

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


def image_parts(image: str) -> tuple[str | None, bool]:
    """installer, installer-secureboot, <platform>-installer[-secureboot] -> (platform, secure
    boot); anything else is upstream's 400."""
    secureboot = image.endswith("-secureboot")
    base = image.removesuffix("-secureboot")
    if base == "installer":
        return None, secureboot
    platform, sep, rest = base.rpartition("-")
    if sep and rest == "installer":
        try:
            return get_platform(platform).name, secureboot
        except InvalidInput:
            pass
    raise InvalidInput(f"invalid image: {image}")


class Registry:
    def __init__(
        self, assets: Assets, schematics: Schematics, catalog: Catalog, builds: Builds
    ) -> None:
        self.assets = assets
        self.schematics = schematics
        self.catalog = catalog
        self.builds = builds
        # Installer digests whose signature a worker verified (or which it pushed and signed).
        self._verified: dict[tuple[str, str, str], str] = {}

    def ping(self) -> Response:
        return Response(b"", headers=dict(API_HEADERS))

    def _target(self, path: str) -> tuple[str, str, str, str]:
        parts = path.split("/")
        if len(parts) != 4 or parts[2] not in {"manifests", "blobs"}:
            raise NotFound(f'unknown registry path: "{path}"')
        image, schematic_id, kind, reference = parts
        image_parts(image)
        self.schematics.find(schematic_id)
        if reference == "latest" and kind == "manifests":
            stable = [v for v in self.catalog.versions() if not v.is_prerelease]
            if not stable:
                raise NotFound("no stable version is available")
            reference = stable[-1].tag
        if not (DIGEST.fullmatch(reference) or (kind == "manifests" and TAG.fullmatch(reference))):
            raise InvalidInput(f"invalid reference: {reference}")
        return image, schematic_id, kind, reference

    async def resolve(self, path: str) -> Response | FileResponse:
        image, schematic_id, kind, reference = self._target(path)
        if self.assets.config.registry is not None:
            raise Redirect(await self._in_registry(image, schematic_id, kind, reference))
        relative = f"v2/{image}/{schematic_id}/{kind}/{reference}"
        found = self.assets.public_file(relative) or await self._built(
            image, schematic_id, kind, reference, relative
        )
        if kind == "blobs":
            headers = {**API_HEADERS, "Docker-Content-Digest": reference}
            return FileResponse(found, "application/octet-stream", headers=headers)
        return self._manifest(found)

    async def _built(
        self, image: str, schematic_id: str, kind: str, reference: str, relative: str
    ) -> Path:
        """No registry configured: the installer built into the store's own v2 tree on demand."""
        root = self.builds.root
        if not (root / relative).is_file() and kind == "manifests" and reference.startswith("v"):
            version = parse_version(reference)
            self.catalog.check(version)
            await self.builds.build(self._installer_job(image, schematic_id, version.tag, root))
        if not (root / relative).is_file():
            raise NotFound(f"{kind.removesuffix('s')} unknown: {image}/{schematic_id}:{reference}")
        return root / relative

    def _installer_job(
        self, image: str, schematic_id: str, tag: str, v2_root: Path | None = None
    ) -> Job:
        _, schematic_file = self.schematics.find(schematic_id)
        platform, secureboot = image_parts(image)
        argv = ["installer", "--schematic", str(schematic_file), "--version", tag]
        if platform is not None:
            argv += ["--platform", platform]
        if secureboot:
            argv.append("--secureboot")
        if v2_root is not None:
            argv += ["--v2-root", str(v2_root)]
        return Job(("installer", image, schematic_id, tag), f"{image}:{tag}", tuple(argv))

    async def _in_registry(self, image: str, schematic_id: str, kind: str, reference: str) -> str:
        """The registry URL to redirect to: by digest, the installer made and signed first."""
        push = self.assets.config.registry
        assert push is not None
        repository = push.repository(f"{image}/{schematic_id}")
        base = f"{'http' if push.insecure else 'https'}://{push.host}/v2/{repository}"
        if kind == "blobs" or not reference.startswith("v"):
            return f"{base}/{kind}/{reference}"
        version = parse_version(reference)
        self.catalog.check(version)
        key = (image, schematic_id, version.tag)
        digest = self._verified.get(key)
        if digest is None:
            report = await self.builds.build(self._installer_job(image, schematic_id, version.tag))
            digest = str(report.get("digest", ""))
            if not DIGEST.fullmatch(digest):
                raise BuildError(f"{image}:{version.tag}: the worker reported no digest")
            self._verified[key] = digest
        return f"{base}/manifests/{digest}"

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
