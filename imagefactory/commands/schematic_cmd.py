"""`imagefactory schematic id|canonical [FILE|-]`: a schematic's upstream ID or canonical bytes.

Reads YAML or JSON from FILE or stdin, parses it strictly, prints what upstream would hash.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imagefactory.commands import common_options, read_schematic


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("schematic", help="schematic ID and canonical form")
    actions = parser.add_subparsers(dest="schematic_command", required=True)
    for name, func, text in (
        ("id", _print_id, "print the 64-hex schematic ID"),
        ("canonical", _print_canonical, "write the canonical YAML bytes (what the ID hashes)"),
    ):
        action = actions.add_parser(name, parents=[common_options()], help=text)
        action.add_argument("file", nargs="?", default="-", help="schematic file, - for stdin")
        action.set_defaults(func=func)


def _print_id(args: argparse.Namespace) -> int:
    sys.stdout.write(read_schematic(args.file).id + "\n")
    return 0


def _print_canonical(args: argparse.Namespace) -> int:
    sys.stdout.flush()
    sys.stdout.buffer.write(read_schematic(args.file).canonical())
    sys.stdout.buffer.flush()
    return 0
