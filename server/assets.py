"""Where an asset comes from: the published generation first, then on-demand builds in the store.

`public` is resolved per request, so a generation switch is atomic for readers; on-demand results
live under store/ondemand/ with the static tree's paths and are never written into `public`.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from imagefactory import tree
from imagefactory.config import Config
from imagefactory.errors import NotFound
from imagefactory.profile import OutputKind, parse_asset_path, resolve
from imagefactory.schematic import Schematic
from imagefactory.versions import TalosVersion
from server.builds import Builds, Job
from server.catalog import Catalog
from server.schematics import Schematics

CANONICAL_CACHE = 100_000


def parse_version(text: str) -> TalosVersion:
    return TalosVersion.parse(text)


class Assets:
    def __init__(
        self, config: Config, schematics: Schematics, catalog: Catalog, builds: Builds
    ) -> None:
        self.config = config
        self.schematics = schematics
        self.catalog = catalog
        self.builds = builds
        self._canonical: dict[tuple[str, str, str], str] = {}

    def _canonical_path(self, asset: str, version: TalosVersion, schematic: Schematic) -> str:
        """The asset path with aliases resolved; resolving a profile is slow, its answer fixed."""
        key = (asset, version.tag, schematic.id)
        found = self._canonical.get(key)
        if found is None:
            found = resolve(asset, version, schematic).canonical_path  # bad paths raise here
            if len(self._canonical) >= CANONICAL_CACHE:
                self._canonical.clear()
            self._canonical[key] = found
        return found

    def public_root(self) -> Path:
        """The current generation: where the `public` symlink points now (or `public` itself)."""
        public = self.config.public
        try:
            return public.parent / os.readlink(public)
        except OSError:  # not a symlink (a plain tree), or nothing published
            return public

    def public_file(self, relative: str) -> Path | None:
        """A file of the current generation, or None; one readlink per request keeps a switch
        atomic for readers."""
        path = self.public_root() / relative
        return path if path.is_file() else None

    def image(
        self, schematic_id: str, version_text: str, name: str
    ) -> Path | Coroutine[Any, Any, Path]:
        """The file for /image/<id>/<version>/<name> (an asset or one of its sidecars): at once
        when published or built already, else a coroutine that builds it first."""
        schematic, schematic_file = self.schematics.find(schematic_id)
        version = parse_version(version_text)
        self.catalog.check(version)
        sidecar = next((s for s in tree.SIDECAR_SUFFIXES if name.endswith(s)), "")
        asset = name.removesuffix(sidecar) if sidecar else name
        canonical = self._canonical_path(asset, version, schematic)
        for candidate in dict.fromkeys((asset, canonical)):
            found = self.public_file(tree.image_path(schematic_id, version, candidate + sidecar))
            if found is not None:
                return found
        dest_dir = self.builds.root / tree.image_path(schematic_id, version, "")
        built = dest_dir / (canonical + sidecar)
        if (dest_dir / canonical).is_file():
            return _signed(built, name)
        argv = (
            "asset",
            "--schematic", str(schematic_file),
            "--version", version.tag,
            "--asset", canonical,
            "--dest", str(dest_dir),
        )  # fmt: skip
        key = ("asset", schematic_id, version.tag, canonical)
        return self._build(Job(key, canonical, argv, dest_dir / canonical), built, name)

    async def _build(self, job: Job, built: Path, name: str) -> Path:
        await self.builds.build(job)
        return _signed(built, name)

    def cmdline_file(
        self, schematic_id: str, version_text: str, platform_arch: str
    ) -> Path | Coroutine[Any, Any, Path]:
        """The file of the kernel command line upstream's PXE handler puts in its script."""
        request = parse_asset_path(f"cmdline-{platform_arch}")
        assert request.kind is OutputKind.CMDLINE
        return self.image(schematic_id, version_text, request.path)


def _signed(built: Path, name: str) -> Path:
    if not built.is_file():  # the `.sig` of a build made without a signing key
        raise NotFound(f"{name}: not signed (no publish signing key is configured)")
    return built
