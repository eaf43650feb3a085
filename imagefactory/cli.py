"""Command-line entry point `imagefactory`: one subcommand module per concern.

Exit codes: 0 ok, 1 build or runtime failure, 2 bad input (one line naming the problem).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from imagefactory.errors import FactoryError

# Each module exposes register(subparsers); its parsers set `func(args) -> int`.
COMMAND_MODULES = (
    "imagefactory.commands.schematic_cmd",
    "imagefactory.commands.profile_cmd",
    "imagefactory.commands.cmdline_cmd",
    "imagefactory.commands.sample_cmd",
    "imagefactory.commands.sources_cmd",
    "imagefactory.commands.build_cmd",
)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse already exits 2; keep its message to one line.
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="imagefactory", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except FactoryError as exc:
        print(f"imagefactory: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so in one line; -v shows where
        logging.getLogger("imagefactory").debug("internal error", exc_info=True)
        print(f"imagefactory: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
