"""`imagefactory cmdline`: print the kernel command line upstream would build, on one line.

The default kind is `cmdline`, i.e. what the `cmdline-<platform>-<arch>` asset holds.
"""

from __future__ import annotations

import argparse
from typing import Any

from imagefactory import cmdline
from imagefactory.commands import common_options
from imagefactory.commands.profile_cmd import load_schematic
from imagefactory.platforms import Arch, platform_names
from imagefactory.profile import OutputKind, request_for, resolve_request
from imagefactory.versions import TalosVersion


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cmdline", parents=[common_options()], help="print the kernel command line of an asset"
    )
    parser.add_argument("--version", required=True, help="Talos version, e.g. v1.11.0")
    parser.add_argument("--platform", required=True, help=f"one of: {', '.join(platform_names())}")
    parser.add_argument(
        "--arch", required=True, help=f"{', '.join(Arch)} (x86_64 and i386 mean amd64)"
    )
    parser.add_argument("--secureboot", action="store_true", help="the Secure Boot variant")
    parser.add_argument("--schematic", metavar="FILE", help="apply this schematic's args and META")
    parser.add_argument(
        "--kind",
        type=OutputKind,
        choices=list(OutputKind),
        default=OutputKind.CMDLINE,
        help="output kind whose command line to print (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    version = TalosVersion.parse(args.version)
    request = request_for(args.kind, args.platform, args.arch, version, secureboot=args.secureboot)
    profile = resolve_request(request, version, load_schematic(args.schematic))
    print(cmdline.build(profile))
    return 0
