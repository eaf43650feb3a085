"""A small published tree for the UI tests: real assets built from the sample release.

Laid out as the pipeline publishes (tree.py paths, `.sha256`/`.sha512` beside each file, the
catalogs as upstream's JSON), with three schematics: two the config marks public, one it does not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from imagefactory import tree
from imagefactory.build import build_asset
from imagefactory.config import load_config
from imagefactory.schematic import Schematic, parse_schematic
from imagefactory.versions import TalosVersion
from tests.build_helpers import private_config

VERSION = "v1.11.5"
SCHEMATICS = {
    "metal-gvisor": (
        "customization:\n    extraKernelArgs:\n        - console=ttyS0\n"
        "    systemExtensions:\n        officialExtensions:\n            - siderolabs/gvisor\n",
        ("kernel-amd64", "cmdline-metal-amd64", "initramfs-amd64.xz"),
    ),
    "rpi": (
        "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\ncustomization: {}\n",
        ("cmdline-metal-arm64",),
    ),
    "secret-lab": (
        "customization:\n    extraKernelArgs:\n        - talos.secret=lab-only\n",
        ("cmdline-metal-amd64",),
    ),
}
PUBLIC = ("metal-gvisor", "rpi")
# Listed with v1.11.5's catalogs but nothing built: the wizard's fields that start at 1.12
# (bootloader, embedded machine config) need a version that has them; a pre-release, so the
# default stays the newest stable version.
CATALOG_ONLY = "v1.13.0-alpha.1"
# Before overlays (1.7): no SBC target.
CATALOG_ONLY_OLD = "v1.6.7"


def _write(root: Path, path: str, data: bytes) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _publish_file(root: Path, path: str, data: bytes) -> None:
    name = path.rsplit("/", 1)[-1]
    _write(root, path, data)
    _write(
        root, path + ".sha256", tree.checksum_line(hashlib.sha256(data).hexdigest(), name).encode()
    )
    _write(
        root, path + ".sha512", tree.checksum_line(hashlib.sha512(data).hexdigest(), name).encode()
    )


def _catalogs(root: Path, lock: dict[str, Any]) -> None:
    copied = lock["versions"][VERSION]
    versions = {**lock["versions"], CATALOG_ONLY: copied, CATALOG_ONLY_OLD: copied}
    tags = sorted(versions, key=TalosVersion.parse)
    _write(root, tree.VERSIONS, json.dumps(tags).encode())
    for tag, entry in versions.items():
        extensions = [
            {"name": n, "ref": e["ref"], "digest": e["digest"], "author": e["author"],
             "description": e["description"]}
            for n, e in entry["extensions"].items()
        ]  # fmt: skip
        overlays = [
            {"name": n, "image": e["image"], "ref": e["ref"], "digest": e["digest"]}
            for n, e in entry["overlays"].items()
        ]
        _write(root, tree.extensions_path(tag), json.dumps(extensions).encode())
        _write(root, tree.overlays_path(tag), json.dumps(overlays).encode())


def build_tree(sample_config: Path, where: Path) -> tuple[Path, Path, dict[str, Schematic]]:
    """(config, published tree, label -> schematic)."""
    schematics_dir = where / "schematics"
    schematics_dir.mkdir(parents=True)
    for label, (text, _) in SCHEMATICS.items():
        (schematics_dir / f"{label}.yaml").write_text(text)
    config_path = private_config(
        sample_config,
        where,
        schematics=str(schematics_dir),
        externalURL="http://factory.example.test/",
        site={"publicSchematics": list(PUBLIC), "registryHost": "factory.example.test"},
    )
    config = load_config(config_path)
    root = where / "public"
    lock = json.loads((where / "sources.lock.json").read_text())
    _catalogs(root, lock)
    parsed: dict[str, Schematic] = {}
    for label, (text, assets) in SCHEMATICS.items():
        schematic = parse_schematic(text.encode())
        parsed[label] = schematic
        _write(root, tree.schematic_path(schematic.id), schematic.canonical())
        for asset in assets:
            built = build_asset(config, schematic, TalosVersion.parse(VERSION), asset)
            _publish_file(root, tree.image_path(schematic.id, VERSION, asset), built.read_bytes())
    return config_path, root, parsed


if __name__ == "__main__":
    import sys

    out = Path(sys.argv[2])
    print(build_tree(Path(sys.argv[1]), out))
