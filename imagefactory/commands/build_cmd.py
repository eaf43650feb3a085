"""`imagefactory build`: one asset of one schematic and Talos version, from the lock, into DIR/PATH.

The schematic is a file, or an ID looked up among the config's schematics.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagefactory.commands import common_options, output_directory, read_schematic

if TYPE_CHECKING:
    from imagefactory.config import Config
    from imagefactory.schematic import Schematic

SCHEMATIC_ID = re.compile(r"[0-9a-f]{64}")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build", parents=[common_options()], help="build one asset into DIR/ASSET_PATH"
    )
    parser.add_argument("--schematic", required=True, help="schematic file, or its ID")
    parser.add_argument("--version", required=True, help="Talos version, e.g. v1.11.5")
    parser.add_argument("--asset", required=True, help="asset path, e.g. metal-amd64.iso")
    parser.add_argument("--out", required=True, type=output_directory, help="output directory")
    parser.set_defaults(func=run)


def find_schematic(config: Config, value: str) -> Schematic:
    """A schematic file, or an ID looked up in the schematics directory's index.

    Bad files in the directory are reported and skipped: they never hide the others.
    """
    from imagefactory.schematic_dir import scan

    if not SCHEMATIC_ID.fullmatch(value) or Path(value).is_file():
        return read_schematic(value)
    found = scan(config.schematics, config.store / "index")
    for _, message in found.errors:
        print(f"imagefactory: warning: skipped {message}", file=sys.stderr)
    return found.find(value)


def run(args: argparse.Namespace) -> int:
    from imagefactory.build import build_asset, link_into
    from imagefactory.config import load_config
    from imagefactory.versions import TalosVersion

    config = load_config(args.config)
    schematic = find_schematic(config, args.schematic)
    version = TalosVersion.parse(args.version)
    built = build_asset(config, schematic, version, args.asset)
    print(link_into(built, args.out, args.asset))
    return 0
