"""Command-line entry point `imagefactory`: one subcommand module per concern.

Exit codes: 0 ok, 1 build or runtime failure, 2 bad input (one line naming the problem).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from imagefactory.errors import BuildError, FactoryError, InvalidInput

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
    "validate": "imagefactory.commands.validate_cmd",
    "pipeline": "imagefactory.commands.pipeline_cmd",
    "generations": "imagefactory.commands.generations_cmd",
    "rollback": "imagefactory.commands.generations_cmd",
    "gc": "imagefactory.commands.generations_cmd",
}


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse already exits 2; keep its message to one line.
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


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


# An error line is for a person: an echoed 100 KB input is cut.
MAX_MESSAGE = 1000


def one_line(message: str) -> str:
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    return line if len(line) <= MAX_MESSAGE else f"{line[:MAX_MESSAGE]}... (cut)"


def _as_factory_error(exc: Exception) -> FactoryError:
    """The one mapping of failures to what the user is told (and the exit code)."""
    if isinstance(exc, FactoryError):
        return exc
    if isinstance(exc, OSError):  # a full disk, a read-only store, a path that is not there
        from imagefactory.files import error_of  # noqa: PLC0415 - loaded only on failure

        return error_of(exc)
    if isinstance(exc, MemoryError):
        return BuildError("out of memory")
    if isinstance(exc, RecursionError):
        return InvalidInput("input nested too deeply")
    # A bug: one line anyway; -v shows where.
    logging.getLogger("imagefactory").debug("unexpected failure", exc_info=exc)
    return BuildError(f"unexpected failure (a bug; -v shows where): {type(exc).__name__}: {exc}")


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so scratch directories and partial outputs are removed.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        error = _as_factory_error(exc)
        print(f"imagefactory: error: {one_line(str(error))}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
