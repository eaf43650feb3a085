"""Versions, extensions and overlays as upstream's JSON answers (the published tree's encoders),
from the lock the builds use."""

from __future__ import annotations

import os
from typing import Any

from imagefactory.config import Config
from imagefactory.errors import NotFound
from imagefactory.publish.site import extensions_json, overlays_json, versions_json
from imagefactory.sources import read_lock
from imagefactory.versions import TalosVersion


class Catalog:
    """The lock's versions and catalogs, re-read when the lock file changes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock_path = str(config.lock_path)  # stat per request: no Path built each time
        self._stamp: tuple[int, int] | None = None
        self._lock: dict[str, Any] = {}

    def stamp(self) -> tuple[int, int]:
        """The lock file's mtime and inode: what changes when it is written again."""
        st = os.stat(self._lock_path)
        return st.st_mtime_ns, st.st_ino

    def _entries(self) -> dict[str, Any]:
        stamp = self.stamp()
        if stamp != self._stamp:
            self._lock, self._stamp = read_lock(self.config), stamp
        versions: dict[str, Any] = self._lock["versions"]
        return versions

    def versions(self) -> list[TalosVersion]:
        return sorted(TalosVersion.parse(tag) for tag in self._entries())

    def check(self, version: TalosVersion) -> None:
        if version.tag not in self._entries():
            raise NotFound(f"version {version} is not available")

    def versions_json(self) -> bytes:
        return versions_json(self.versions())

    def extensions_json(self, version: TalosVersion) -> bytes:
        self.check(version)
        return extensions_json(self._entries()[version.tag])

    def overlays_json(self, version: TalosVersion) -> bytes:
        self.check(version)
        return overlays_json(self._entries()[version.tag])
