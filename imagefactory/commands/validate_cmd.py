"""`imagefactory validate`: the config and every schematic in its schematics directory, nothing built.

Exit 2 with one line naming the file, the field and the line of the first problem (the pre-receive hook).
"""

from __future__ import annotations

import argparse
from typing import Any

from imagefactory.commands import common_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        parents=[common_options()],
        help="check the config and every schematic in its schematics directory",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.plan import secureboot_enabled, validate_schematics

    config = load_config(args.config)
    secureboot_enabled(config)
    found = validate_schematics(config)
    print(f"{config.path}: ok; {len(found.by_id)} schematics in {config.schematics}")
    return 0
