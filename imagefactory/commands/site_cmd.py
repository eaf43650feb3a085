"""`imagefactory site render --config FILE --out DIR`: the static web UI, from the tree in DIR.

Run on a published generation before it is switched in; lists only `site.publicSchematics`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from imagefactory.commands import common_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("site", help="the static web UI")
    actions = parser.add_subparsers(dest="site_command", required=True)
    render = actions.add_parser(
        "render", parents=[common_options()], help="render the UI into a published tree"
    )
    render.add_argument("--out", required=True, type=Path, help="the published tree (a generation)")
    render.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.webui import render

    written = render(load_config(args.config), args.out)
    print(f"{len(written)} files of the web UI written into {args.out}")
    return 0
