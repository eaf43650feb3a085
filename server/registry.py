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
        found = self.assets.public_file(relative)
        if found is None:
            raise NotFound(f"{kind.removesuffix('s')} unknown: {image}/{schematic_id}:{reference}")
        if kind == "blobs":
            headers = {**API_HEADERS, "Docker-Content-Digest": reference}
            return FileResponse(found, "application/octet-stream", headers=headers)
        return self._manifest(found)

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
            _, schematic_file = self.schematics.find(schematic_id)
            platform, secureboot = image_parts(image)
            argv = [
                "installer",
                "--schematic", str(schematic_file),
                "--version", version.tag,
            ]  # fmt: skip
            if platform is not None:
                argv += ["--platform", platform]
            if secureboot:
                argv.append("--secureboot")
            job = Job(("installer", *key), f"{image}:{version.tag}", tuple(argv))
            report = await self.builds.build(job)
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
