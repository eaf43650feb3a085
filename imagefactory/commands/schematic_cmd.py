"""`imagefactory schematic id|canonical [FILE|-]`: a schematic's upstream ID or canonical bytes.

Reads YAML or JSON from FILE or stdin, parses it strictly, prints what upstream would hash.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from imagefactory.commands import common_options
from imagefactory.errors import InvalidInput
from imagefactory.schematic import Schematic, parse_schematic
from imagefactory.yamlload import MAX_BYTES


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


def _load(file: str) -> Schematic:
    if file == "-":
        data = sys.stdin.buffer.read(MAX_BYTES + 1)
        return parse_schematic(data, source="<stdin>")
    path = Path(file)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInput(f"{file}: no such file") from None
    except OSError as exc:
        raise InvalidInput(f"{file}: cannot read: {exc.strerror}") from None
    return parse_schematic(data, source=file)


def _print_id(args: argparse.Namespace) -> int:
    sys.stdout.write(_load(args.file).id + "\n")
    return 0


def _print_canonical(args: argparse.Namespace) -> int:
    sys.stdout.flush()
    sys.stdout.buffer.write(_load(args.file).canonical())
    sys.stdout.buffer.flush()
    return 0
