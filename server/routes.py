"""The URL map: every route of the server attached in `routes()`, its handler beside it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from imagefactory import tree
from imagefactory.errors import FactoryError, InvalidInput, NotFound
from imagefactory.signing.keys import load_private_key, public_key_pem
from server.assets import Assets, Pending, parse_version
from server.catalog import Catalog
from server.metrics import Metrics
from server.pxe import ScriptCache, split_platform_arch
from server.registry import Registry
from server.schematics import Schematics
from server.web import TEXT, FactoryRequest, FileResponse, Response, Route, Unavailable, route

# What a `filename=` override may hold: it goes inside a quoted header parameter.
_FILENAME = re.compile(r"[A-Za-z0-9._+-]{1,255}")


class Api:
    """The handlers; each returns a Response or FileResponse (a coroutine of one when it may wait
    for a build), or raises."""

    def __init__(
        self,
        *,
        assets: Assets,
        schematics: Schematics,
        catalog: Catalog,
        registry: Registry,
        metrics: Metrics,
        pxe_base_url: str,
    ) -> None:
        self.assets = assets
        self.schematics = schematics
        self.catalog = catalog
        self.registry = registry
        self.metrics = metrics
        self.pxe_base_url = pxe_base_url
        self.pxe_scripts = ScriptCache(pxe_base_url)

    def _published(self, relative: str, content_type: str) -> FileResponse | None:
        found = self.assets.public_path(relative)
        return FileResponse(found, content_type) if found else None

    def health(self, request: FactoryRequest) -> Response:
        return Response(b"")

    def ready(self, request: FactoryRequest) -> Response:
        """Ready when the lock the builds use can be read (it names the versions served)."""
        try:
            self.catalog.versions()
        except (FactoryError, OSError) as exc:
            raise Unavailable(f"not ready: {exc}") from None
        return Response(b"")

    def metrics_text(self, request: FactoryRequest) -> Response:
        return Response(self.metrics.render(), content_type="text/plain; version=0.0.4")

    def create_schematic(self, request: FactoryRequest) -> Response:
        assert request.content is not None
        schematic = self.schematics.create(request.content.read())
        body = json.dumps(
            {"id": schematic.id, "schematic": schematic.canonical_bytes.decode()},
            separators=(",", ":"),
        )
        return Response((body + "\n").encode(), 201, "application/json")

    def get_schematic(self, request: FactoryRequest, schematic_id: str) -> Response:
        try:
            schematic, _ = self.schematics.find(schematic_id)
        except NotFound:
            raise NotFound("schematic not found") from None
        return Response(schematic.canonical_bytes, content_type="application/yaml")

    def image(
        self, request: FactoryRequest, schematic_id: str, version: str, asset: str
    ) -> FileResponse | Coroutine[Any, Any, FileResponse]:
        name = asset
        override = request.args.get(b"filename")
        if override:
            name = override[0].decode("utf-8", "replace")
            if not _FILENAME.fullmatch(name):
                raise InvalidInput(f"invalid filename: {name!r}")
        found = self.assets.image(schematic_id, version, asset)
        if isinstance(found, str):
            return FileResponse(found, tree.content_type(asset), download_name=name)
        return self._image_built(found, asset, name)

    async def _image_built(self, building: Pending, asset: str, name: str) -> FileResponse:
        return FileResponse(await building, tree.content_type(asset), download_name=name)

    def pxe(
        self, request: FactoryRequest, schematic_id: str, version: str, platform_arch: str
    ) -> Response | Coroutine[Any, Any, Response]:
        schematic = self.schematics.find(schematic_id)
        talos = parse_version(version)
        self.catalog.check(talos)
        platform, arch, secureboot, asset = split_platform_arch(platform_arch)
        found = self.assets.locate(schematic_id, schematic, talos, asset)

        def script(cmdline_file: str) -> Response:
            body, source = self.pxe_scripts.script(
                schematic_id,
                talos.tag,
                platform,
                arch,
                secureboot=secureboot,
                cmdline_file=cmdline_file,
            )
            return Response(body, source=source)

        if isinstance(found, str):
            return script(found)
        return _then(found, script)

    def versions(self, request: FactoryRequest) -> Response | FileResponse:
        return self._published(tree.VERSIONS, TEXT) or Response(self.catalog.versions_json())

    def extensions(self, request: FactoryRequest, version: str) -> Response | FileResponse:
        talos = parse_version(version)
        published = self._published(tree.extensions_path(talos), TEXT)
        return published or Response(self.catalog.extensions_json(talos))

    def overlays(self, request: FactoryRequest, version: str) -> Response | FileResponse:
        talos = parse_version(version)
        published = self._published(tree.overlays_path(talos), TEXT)
        return published or Response(self.catalog.overlays_json(talos))

    def signing_key(self, request: FactoryRequest) -> Response | FileResponse:
        found = self._published(tree.SIGNING_KEY, tree.PEM)
        if found is not None:
            return found
        key_path = self.assets.config.publish_signing_key
        if key_path is None:
            raise NotFound("no signing key is configured")
        return Response(public_key_pem(load_private_key(key_path)), content_type=tree.PEM)

    def secureboot_cert(self, request: FactoryRequest) -> FileResponse:
        found = self._published(tree.SECUREBOOT_CERT, tree.PEM)
        keys = self.assets.config.secureboot
        if found is None and keys is not None:
            found = FileResponse(Path(keys.signing_cert), tree.PEM)
        if found is None:
            raise NotFound("secure boot is disabled")
        return found

    def ui_index(self, request: FactoryRequest) -> FileResponse:
        found = self._published(tree.UI_INDEX, tree.ui_content_type(tree.UI_INDEX))
        if found is None:
            raise NotFound("the published tree has no web UI")
        return found

    def ui_file(self, request: FactoryRequest, path: str) -> FileResponse:
        relative = f"{tree.UI_DIR}/{path}"
        found = self._published(relative, tree.ui_content_type(relative))
        if found is None:
            raise NotFound(f"/{relative} not found")
        return found

    def registry_ping(self, request: FactoryRequest) -> Response:
        return self.registry.ping()

    def registry_path(
        self, request: FactoryRequest, path: str
    ) -> Coroutine[Any, Any, Response | FileResponse]:
        # containerd adds ?ns=<host> when a mirror points here; the path alone decides.
        return self.registry.resolve(path)


async def _then(building: Pending, answer: Callable[[str], Response]) -> Response:
    """The answer made from a file once its on-demand build has finished."""
    return answer(await building)


def routes(api: Api) -> list[Route]:
    return [
        route("healthz", "GET,HEAD", "/healthz", api.health),  # /healthz
        route("readyz", "GET,HEAD", "/readyz", api.ready),  # /readyz
        route("metrics", "GET", "/metrics", api.metrics_text),  # /metrics
        route("schematics", "POST", "/schematics", api.create_schematic),  # /schematics
        # /schematics/<id>
        route("schematic", "GET", "/schematics/:schematic_id", api.get_schematic),
        # /image/<id>/<version>/<asset>[.sha256|.sha512|.sig]
        route("image", "GET,HEAD", "/image/:schematic_id/:version/:asset", api.image),
        # /pxe/<id>/<version>/<platform>-<arch>[-secureboot]
        route("pxe", "GET,HEAD", "/pxe/:schematic_id/:version/:platform_arch", api.pxe),
        route("versions", "GET,HEAD", "/versions", api.versions),  # /versions
        # /version/<v>/extensions/official
        route("extensions", "GET,HEAD", "/version/:version/extensions/official", api.extensions),
        # /version/<v>/overlays/official
        route("overlays", "GET,HEAD", "/version/:version/overlays/official", api.overlays),
        # /oci/cosign/signing-key.pub
        route("signing-key", "GET,HEAD", "/oci/cosign/signing-key.pub", api.signing_key),
        # /secureboot/signing-cert.pem
        route("secureboot-cert", "GET,HEAD", "/secureboot/signing-cert.pem", api.secureboot_cert),
        route("ui", "GET,HEAD", "/", api.ui_index),  # /: the web UI's wizard
        route("ui", "GET,HEAD", "/ui/*path", api.ui_file),  # /ui/...: its pages and assets
        route("registry", "GET,HEAD", "/v2", api.registry_ping),  # /v2 and /v2/
        # /v2/<image>/<id>/{manifests|blobs}/<reference>
        route("registry", "GET,HEAD", "/v2/*path", api.registry_path),
    ]
