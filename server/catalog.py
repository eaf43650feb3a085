"""Versions, extensions and overlays as upstream's JSON answers, from the lock the builds use."""

from __future__ import annotations

import json
import os
from typing import Any

from imagefactory.config import Config
from imagefactory.errors import NotFound
from imagefactory.sources import read_lock
from imagefactory.versions import TalosVersion

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: Any) -> bytes:
    """What Go's json.NewEncoder(w).Encode writes: compact, HTML-escaped, one trailing newline."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return (text + "\n").encode()


class Catalog:
    """The lock's versions and catalogs, re-read when the lock file changes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stamp: tuple[int, int] | None = None
        self._lock: dict[str, Any] = {}

    def _entries(self) -> dict[str, Any]:
        st = os.stat(self.config.lock_path)
        stamp = (st.st_mtime_ns, st.st_ino)
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
        return go_json([v.tag for v in self.versions()])

    def extensions_json(self, version: TalosVersion) -> bytes:
        self.check(version)
        entries = self._entries()[version.tag]["extensions"]
        return go_json(
            [
                {
                    "name": name,
                    "ref": e["ref"],
                    "digest": e["digest"],
                    "author": e["author"],
                    "description": e["description"],
                }
                for name, e in entries.items()
            ]
        )

    def overlays_json(self, version: TalosVersion) -> bytes:
        self.check(version)
        entries = self._entries()[version.tag]["overlays"]
        return go_json(
            [
                {"name": name, "image": e["image"], "ref": e["ref"], "digest": e["digest"]}
                for name, e in entries.items()
            ]
        )
