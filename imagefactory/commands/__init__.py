"""CLI subcommands, one module per concern; each exposes `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from imagefactory.errors import InvalidInput

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
    """The schematic in FILE (`-`: standard input), read no further than the size bound."""
    from imagefactory.schematic import parse_schematic
    from imagefactory.yamlload import MAX_BYTES

    if file == "-":
        return parse_schematic(sys.stdin.buffer.read(MAX_BYTES + 1), source="<stdin>")
    try:
        with Path(file).open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInput(f"{file}: no such file") from None
    except OSError as exc:
        raise InvalidInput(f"{file}: cannot read: {exc.strerror}") from None
    return parse_schematic(data, source=file)
