"""`imagefactory serve`: the Twisted server (HTTP API, on-demand builds, registry frontend, TFTP).

The server package is imported inside `run`, so the core never loads Twisted for other commands.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from imagefactory.commands import common_options
from imagefactory.errors import InvalidInput

MAX_WORKERS = 64  # as the config schema bounds server.workers


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", parents=[common_options()], help="serve the factory over HTTP (and TFTP)"
    )
    parser.add_argument("--http", help="HTTP endpoint, e.g. tcp:8080:interface=127.0.0.1")
    parser.add_argument("--tftp", type=int, metavar="PORT", help="TFTP port (0: none)")
    parser.add_argument("--external-url", help="the URL clients reach this server at")
    parser.add_argument(
        "--workers",
        type=worker_count,
        metavar="N",
        help=f"HTTP processes sharing the listening socket, 1 to {MAX_WORKERS} (default: config)",
    )
    parser.set_defaults(func=run)


def worker_count(text: str) -> int:
    """argparse type of --workers; its error is the one line argparse prints (exit 2)."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{count} is not between 1 and {MAX_WORKERS}")
    return count


def run(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config

    config = load_config(args.config)
    settings = config.server
    if args.http:
        settings = dataclasses.replace(settings, http=args.http)
    if args.workers is not None:
        settings = dataclasses.replace(settings, workers=args.workers)
    if args.tftp is not None:
        if not 0 <= args.tftp <= 65535:
            raise InvalidInput(f"--tftp: {args.tftp} is not a UDP port")
        settings = dataclasses.replace(settings, tftp_port=args.tftp)
    config = dataclasses.replace(config, server=settings)

    from server.app import serve
    from server.supervisor import supervise

    try:
        if settings.workers > 1:
            supervise(config, external_url=args.external_url)
        else:
            serve(config, external_url=args.external_url)
    except ValueError as exc:  # a malformed endpoint string
        raise InvalidInput(f"--http: {exc}") from None
    return 0
