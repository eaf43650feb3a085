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

# Command name -> the module that registers it (register(subparsers); its parsers set
# `func(args) -> int`). Only the module of the command being run is imported: start-up pays for
# nothing else. One line per command.
COMMAND_MODULES = {
    "schematic": "imagefactory.commands.schematic_cmd",
    "profile": "imagefactory.commands.profile_cmd",
    "cmdline": "imagefactory.commands.cmdline_cmd",
    "sample-release": "imagefactory.commands.sample_cmd",
    "lock": "imagefactory.commands.sources_cmd",
    "versions": "imagefactory.commands.sources_cmd",
    "extensions": "imagefactory.commands.sources_cmd",
    "build": "imagefactory.commands.build_cmd",
    "push-installer": "imagefactory.commands.installer_cmd",
    "serve": "imagefactory.commands.serve_cmd",
    "site": "imagefactory.commands.site_cmd",
    "site": "imagefactory.commands.site_cmd",
    "validate": "imagefactory.commands.validate_cmd",
    "pipeline": "imagefactory.commands.pipeline_cmd",
    "generations": "imagefactory.commands.generations_cmd",
    "rollback": "imagefactory.commands.generations_cmd",
    "gc": "imagefactory.commands.generations_cmd",
}


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse already exits 2; keep its message to one line.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _modules_for(argv: Sequence[str]) -> list[str]:
    """The command's own module when argv names one, else all of them (help, typos)."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in COMMAND_MODULES:
        return [COMMAND_MODULES[command]]
    return list(dict.fromkeys(COMMAND_MODULES.values()))


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="imagefactory", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    for name in _modules_for(sys.argv[1:] if argv is None else argv):
        importlib.import_module(name).register(subparsers)
    return parser


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
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
