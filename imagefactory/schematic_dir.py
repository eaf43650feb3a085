"""The schematics directory as an index by ID: every file parsed once, bad files skipped and reported.

The index is cached (in the store) and each entry is reused while its file's size, mtime and inode
are unchanged, so a lookup by ID costs a directory listing, not a parse of every file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory.errors import FactoryError, NotFound
from imagefactory.files import read_bounded, write_atomic
from imagefactory.schematic import Schematic, parse_schematic
from imagefactory.yamlload import limits

INDEX_FORMAT = 1
PATTERNS = ("*.yaml", "*.yml")


@dataclass(frozen=True)
class SchematicFile:
    path: Path
    schematic: Schematic


@dataclass(frozen=True)
class SchematicDir:
    directory: Path
    by_id: dict[str, SchematicFile]
    errors: tuple[tuple[Path, str], ...]

    def find(self, schematic_id: str) -> Schematic:
        found = self.by_id.get(schematic_id)
        if found is None:
            raise NotFound(f'schematic ID "{schematic_id}" not found')
        return found.schematic


def _files(directory: Path) -> list[Path]:
    try:
        names = {p for pattern in PATTERNS for p in directory.glob(pattern)}
    except OSError:
        return []
    return sorted(names)


def _stamp(path: Path) -> list[int] | None:
    """What invalidates an entry: size, mtime_ns and inode of the file (links followed)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino, stat.S_IFMT(info.st_mode)]


def _index_file(index_dir: Path, directory: Path) -> Path:
    key = hashlib.sha256(str(directory.resolve()).encode("utf-8", "surrogateescape")).hexdigest()
    return index_dir / f"schematics-{key[:32]}.json"


def _load_index(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_bounded(path, 64 << 20, "schematic index"))
    except (FactoryError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _from_cache(entry: Any, stamp: list[int]) -> tuple[Schematic | None, str | None] | None:
    """(schematic, None) or (None, error) recorded for a file with this stamp, or None."""
    if not isinstance(entry, dict) or entry.get("stamp") != stamp:
        return None
    if isinstance(entry.get("error"), str):
        return None, entry["error"]
    try:
        schematic = parse_schematic(base64.b64decode(entry["canonical"]), source="index")
    except (FactoryError, KeyError, TypeError, ValueError):
        return None
    if schematic.id != entry.get("id"):
        return None
    return schematic, None


def _parse(path: Path) -> tuple[Schematic | None, str | None]:
    try:
        data = read_bounded(path, limits().schematic_bytes, "schematic")
        return parse_schematic(data, source=str(path)), None
    except FactoryError as exc:
        return None, " ".join(str(exc).split())


def scan(directory: Path, index_dir: Path | None = None) -> SchematicDir:
    """Every *.yaml/*.yml in `directory`: good ones by ID (first file wins), bad ones with errors."""
    directory = Path(directory)
    index_path = _index_file(index_dir, directory) if index_dir is not None else None
    cached = _load_index(index_path) if index_path is not None else {}
    fresh: dict[str, Any] = {}
    by_id: dict[str, SchematicFile] = {}
    errors: list[tuple[Path, str]] = []
    for path in _files(directory):
        stamp = _stamp(path)
        hit = _from_cache(cached.get(path.name), stamp) if stamp is not None else None
        schematic, error = hit if hit is not None else _parse(path)
        if stamp is not None:
            if schematic is not None:
                fresh[path.name] = {
                    "stamp": stamp,
                    "id": schematic.id,
                    "canonical": base64.b64encode(schematic.canonical()).decode("ascii"),
                }
            else:
                fresh[path.name] = {"stamp": stamp, "error": error}
        if schematic is None:
            errors.append((path, error or f"{path}: cannot read schematic"))
        else:
            by_id.setdefault(schematic.id, SchematicFile(path, schematic))
    if index_path is not None and fresh != cached:
        try:
            payload = {"format": INDEX_FORMAT, "directory": str(directory), "files": fresh}
            write_atomic(index_path, json.dumps(payload, sort_keys=True).encode())
        except OSError:
            pass  # a read-only store still answers, it only cannot remember
    return SchematicDir(directory, by_id, tuple(errors))
