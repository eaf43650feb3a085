"""One HTTP worker of a multi-worker server: `python -m server.http_worker`, started by
server.supervisor with the listening socket as a descriptor; it dies with its supervisor.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from imagefactory import tools
from imagefactory.cli import one_line
from imagefactory.config import load_config
from imagefactory.errors import FactoryError
from server.app import WorkerSeat, make_service, run


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="server.http_worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--external-url", required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--index", required=True, type=int)
    parser.add_argument("--parent", required=True, type=int)
    parser.add_argument("--fd", required=True, type=int)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    # SIGTERM, not SIGKILL: a worker whose supervisor went still stops its builds.
    if not tools.die_with_parent(signal.SIGTERM, args.parent):
        return 1
    try:
        config = load_config(args.config)
        config = dataclasses.replace(config, external_url=args.external_url)
        seat = WorkerSeat(args.index, args.run_dir, args.fd)
        run(make_service(config, seat=seat))
    except FactoryError as exc:
        print(f"worker {args.index}: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
