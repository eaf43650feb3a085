"""`imagefactory profile ASSET_PATH --version V`: resolve an asset path into its build profile.

Prints the profile as JSON (sorted keys, indent 2); a bad path exits 2 with upstream's message.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from imagefactory.commands import common_options, read_schematic

if TYPE_CHECKING:
    from imagefactory.schematic import Schematic


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "profile",
        parents=[common_options()],
        help="resolve an asset path (e.g. metal-amd64.raw.zst) into its build profile",
    )
    parser.add_argument("asset_path", metavar="ASSET_PATH")
    parser.add_argument("--version", required=True, help="Talos version, e.g. v1.11.0")
    parser.add_argument("--schematic", metavar="FILE", help="apply this schematic's options")
    parser.set_defaults(func=run)


def load_schematic(path: str | None) -> Schematic | None:
    """The schematic in FILE, or None when no file was given."""
    return None if path is None else read_schematic(path)


def run(args: argparse.Namespace) -> int:
    from imagefactory.profile import resolve
    from imagefactory.versions import TalosVersion

    profile = resolve(
        args.asset_path, TalosVersion.parse(args.version), load_schematic(args.schematic)
    )
    print(json.dumps(profile.to_json(), sort_keys=True, indent=2))
    return 0
