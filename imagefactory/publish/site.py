"""The tree's files that belong to no cell: versions, catalogs, schematics and the public keys.

Catalogs are upstream's JSON answers byte for byte (Go's json.Encoder: compact, HTML-escaped, newline).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from imagefactory import tree
from imagefactory.config import Config
from imagefactory.schematic_dir import SchematicDir
from imagefactory.signing.keys import load_private_key, public_key_pem
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


def versions_json(versions: Iterable[TalosVersion]) -> bytes:
    return go_json([v.tag for v in sorted(versions)])


def extensions_json(entry: Mapping[str, Any]) -> bytes:
    return go_json(
        [
            {
                "name": name,
                "ref": e["ref"],
                "digest": e["digest"],
                "author": e["author"],
                "description": e["description"],
            }
            for name, e in entry["extensions"].items()
        ]
    )


def overlays_json(entry: Mapping[str, Any]) -> bytes:
    return go_json(
        [
            {"name": name, "image": e["image"], "ref": e["ref"], "digest": e["digest"]}
            for name, e in entry["overlays"].items()
        ]
    )


def site_files(
    config: Config, lock: Mapping[str, Any], schematics: SchematicDir
) -> dict[str, bytes]:
    """tree path -> bytes of every file outside the cells."""
    locked = {TalosVersion.parse(tag): entry for tag, entry in lock["versions"].items()}
    files = {tree.VERSIONS: versions_json(locked)}
    for version, entry in locked.items():
        files[tree.extensions_path(version)] = extensions_json(entry)
        files[tree.overlays_path(version)] = overlays_json(entry)
    for schematic_id, found in schematics.by_id.items():
        files[tree.schematic_path(schematic_id)] = found.schematic.canonical()
    key = config.publish_signing_key
    if key is not None:
        files[tree.SIGNING_KEY] = public_key_pem(load_private_key(key))
    if config.secureboot is not None:
        files[tree.SECUREBOOT_CERT] = config.secureboot.signing_cert.read_bytes()
    return files


def site_key(files: Mapping[str, bytes]) -> str:
    listing = sorted((path, hashlib.sha256(data).hexdigest()) for path, data in files.items())
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
