"""Schematics the server knows: POSTed ones stored by ID, published ones, and the committed files.

POSTed schematics are stored as their canonical bytes at store/schematics/<id>, as upstream keeps
them content-addressed; a lookup checks the published tree, that store, then the config's directory.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

from imagefactory import tree
from imagefactory.config import Config
from imagefactory.errors import InvalidInput, NotFound
from imagefactory.files import write_atomic
from imagefactory.schematic import Schematic, parse_schematic
from imagefactory.schematic_dir import scan
from imagefactory.yamlload import MAX_BYTES

SCHEMATIC_ID = re.compile(r"[0-9a-f]{64}")
CACHE_SIZE = 10_000


class Schematics:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.posted = config.store / "schematics"
        self._cache: OrderedDict[str, tuple[Schematic, Path]] = OrderedDict()
        self._committed: dict[str, Path] = {}
        self._committed_stamp: tuple[float, int] | None = None

    def create(self, body: bytes) -> Schematic:
        """Parse strictly; store the canonical bytes under the ID (an existing ID is kept)."""
        if len(body) > MAX_BYTES:
            raise InvalidInput(f"schematic is larger than {MAX_BYTES} bytes")
        schematic = parse_schematic(body, source="schematic")
        path = self.posted / schematic.id
        if not path.is_file():
            write_atomic(path, schematic.canonical_bytes)
        self._remember(schematic.id, schematic, path)
        return schematic

    def find(self, schematic_id: str) -> tuple[Schematic, Path]:
        """The schematic and a file holding it (for the build process); NotFound otherwise."""
        cached = self._cache.get(schematic_id)
        if cached is not None:
            self._cache.move_to_end(schematic_id)
            return cached
        if not SCHEMATIC_ID.fullmatch(schematic_id):
            raise NotFound(f'schematic ID "{schematic_id}" not found')
        public = self.config.public
        for path in (public / tree.schematic_path(schematic_id), self.posted / schematic_id):
            if path.is_file():
                schematic = parse_schematic(path.read_bytes(), source=str(path))
                if schematic.id == schematic_id:
                    return self._remember(schematic_id, schematic, path)
        committed = self._committed_index().get(schematic_id)
        if committed is not None:
            schematic = parse_schematic(committed.read_bytes(), source=str(committed))
            if schematic.id == schematic_id:
                return self._remember(schematic_id, schematic, committed)
        raise NotFound(f'schematic ID "{schematic_id}" not found')

    def _remember(
        self, schematic_id: str, schematic: Schematic, path: Path
    ) -> tuple[Schematic, Path]:
        self._cache[schematic_id] = (schematic, path)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return schematic, path

    def _committed_index(self) -> dict[str, Path]:
        """ID -> file of the config's schematics directory, re-scanned when the directory changes."""
        directory = self.config.schematics
        try:
            st = directory.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime, st.st_ino)
        if stamp != self._committed_stamp:
            found = scan(directory, self.config.store / "schematic-index")
            self._committed = {sid: entry.path for sid, entry in found.by_id.items()}
            self._committed_stamp = stamp
        return self._committed
