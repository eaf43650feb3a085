"""`imagefactory generations`, `rollback` and `gc`: the published tree's generations.

`public` is a link to one generation; rollback switches it back, gc drops old ones and their files.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from imagefactory.commands import common_options


def register(subparsers: Any) -> None:
    common = common_options()
    listing = subparsers.add_parser(
        "generations", parents=[common], help="list the published generations (* = serving)"
    )
    listing.set_defaults(func=run_list)
    back = subparsers.add_parser(
        "rollback", parents=[common], help="serve the previous generation (or --to N)"
    )
    back.add_argument("--to", type=int, help="the generation to serve")
    back.set_defaults(func=run_rollback)
    collect = subparsers.add_parser(
        "gc", parents=[common], help="drop all but the newest K generations and their store files"
    )
    collect.add_argument("--keep", type=int, required=True, help="generations to keep")
    collect.set_defaults(func=run_gc)


def run_list(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.publish.generations import complete_generations, current

    config = load_config(args.config)
    now = current(config)
    for gen in complete_generations(config):
        manifest = gen.manifest()
        when = datetime.datetime.fromtimestamp(manifest["created"], datetime.UTC)
        report = gen.report() or {}
        mark = "*" if now is not None and now.number == gen.number else " "
        print(
            f"{mark} {gen.number:6d}  {when:%Y-%m-%d %H:%M:%S}Z  "
            f"cells {len(manifest['cells'])}  built {len(report.get('built', []))}  "
            f"failed {len(report.get('failed', []))}"
        )
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.publish.generations import rollback

    gen = rollback(load_config(args.config), args.to)
    print(f"serving generation {gen.number}")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.publish.generations import gc

    done = gc(load_config(args.config), args.keep)
    dropped = ", ".join(map(str, done.generations)) or "none"
    print(f"dropped generations: {dropped}; {done.files} store files, {done.bytes} bytes")
    return 0
