"""Where an asset comes from: the published generation first, then on-demand builds in the store.

`public` is resolved per request, so a generation switch is atomic for readers; on-demand results
live under store/ondemand/ with the static tree's paths and are never written into `public`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Generator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from imagefactory import tree
from imagefactory.config import Config
from imagefactory.errors import NotFound
from imagefactory.profile import resolve
from imagefactory.schematic import Schematic
from imagefactory.versions import TalosVersion
from server.builds import Builds, Job
from server.catalog import Catalog
from server.schematics import Schematics

CANONICAL_CACHE = 100_000


@lru_cache(maxsize=1024)
def parse_version(text: str) -> TalosVersion:
    """A version from a URL; parsed once per spelling (a bad one raises every time)."""
    return TalosVersion.parse(text)


# The tree's relative path of an image file, made once per name.
_image_path = lru_cache(maxsize=4096)(tree.image_path)


class Assets:
    def __init__(
        self, config: Config, schematics: Schematics, catalog: Catalog, builds: Builds
    ) -> None:
        self.config = config
        self.schematics = schematics
        self.catalog = catalog
        self.builds = builds
        self._canonical: dict[tuple[str, str, str], str] = {}
        self._public = str(config.public)
        self._public_parent = str(config.public.parent)

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
        return Path(self._public_root())

    def generation(self) -> str | None:
        """Which generation is published now ("" for none): a switch changes it. None when
        `public` is a plain directory, where files may appear at any time unseen."""
        try:
            return os.readlink(self._public)
        except FileNotFoundError:
            return ""
        except OSError:
            return None

    def _public_root(self) -> str:
        # Plain strings: this runs for every request of a published file.
        target = self.generation()
        if not target:  # a plain tree, or nothing published
            return self._public
        return target if target.startswith("/") else f"{self._public_parent}/{target}"

    def public_file(self, relative: str) -> Path | None:
        """A file of the current generation, or None; one readlink per request keeps a switch
        atomic for readers."""
        path = self.public_path(relative)
        return None if path is None else Path(path)

    def public_path(self, relative: str) -> str | None:
        """`public_file` as a string, for answers that only open it."""
        path = f"{self._public_root()}/{relative}"
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        return path if stat.S_ISREG(st.st_mode) else None

    def image(self, schematic_id: str, version_text: str, name: str) -> str | Pending:
        """The file for /image/<id>/<version>/<name> (an asset or one of its sidecars): at once
        when published or built already, else the build to wait for."""
        found = self.schematics.find(schematic_id)
        version = parse_version(version_text)
        self.catalog.check(version)
        return self.locate(schematic_id, found, version, name)

    def locate(
        self, schematic_id: str, found: tuple[Schematic, Path], version: TalosVersion, name: str
    ) -> str | Pending:
        """`image` for a schematic found and a version checked already."""
        schematic, schematic_file = found
        sidecar = next((s for s in tree.SIDECAR_SUFFIXES if name.endswith(s)), "")
        asset = name.removesuffix(sidecar) if sidecar else name
        canonical = self._canonical_path(asset, version, schematic)
        for candidate in dict.fromkeys((asset, canonical)):
            published = self.public_path(_image_path(schematic_id, version, candidate + sidecar))
            if published is not None:
                return published
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
        return Pending(self.builds, Job(key, canonical, argv, dest_dir / canonical), built, name)


@dataclass(frozen=True)
class Pending:
    """An on-demand build of a file, started when awaited: a caller that looks and does not wait
    (the fast path) starts nothing."""

    builds: Builds
    job: Job
    built: Path
    name: str

    def __await__(self) -> Generator[Any, None, str]:
        return self._wait().__await__()

    async def _wait(self) -> str:
        await self.builds.build(self.job)
        return _signed(self.built, self.name)


def _signed(built: Path, name: str) -> str:
    if not built.is_file():  # the `.sig` of a build made without a signing key
        raise NotFound(f"{name}: not signed (no publish signing key is configured)")
    return str(built)
