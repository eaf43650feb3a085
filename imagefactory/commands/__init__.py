"""CLI subcommands, one module per concern; each exposes `register(subparsers)`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagefactory.schematic import Schematic

DEFAULT_CONFIG = "config/config.yaml"


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes, so they may follow the subcommand's name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log every tool run")
    return common


def read_schematic(file: str) -> Schematic:
    """The schematic in FILE (`-`: standard input): a regular file, read no further than the bound."""
    from imagefactory.files import read_bounded, shown
    from imagefactory.schematic import parse_schematic
    from imagefactory.yamlload import limits

    max_bytes = limits().schematic_bytes
    if file == "-":
        return parse_schematic(sys.stdin.buffer.read(max_bytes + 1), source="<stdin>")
    return parse_schematic(read_bounded(file, max_bytes, "schematic"), source=shown(file))


def output_directory(value: str) -> Path:
    """argparse type of --out: non-empty, normalized so `x/../out` never creates a stray `x`."""
    if not value:
        raise argparse.ArgumentTypeError("an empty path is not an output directory")
    if "\0" in value:
        raise argparse.ArgumentTypeError("a path cannot contain NUL")
    return Path(os.path.abspath(value))
