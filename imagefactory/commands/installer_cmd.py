"""`imagefactory push-installer`: build the installer index, push it by digest, sign, then tag.

Prints the pushed reference with its digest; the tag never names an unsigned image.
"""

from __future__ import annotations

import argparse
from typing import Any

from imagefactory.commands import common_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "push-installer",
        parents=[common_options()],
        help="push a schematic's installer image (both arches) by digest, sign it, then tag it",
    )
    parser.add_argument("--schematic", required=True, help="schematic file, or its ID")
    parser.add_argument("--version", required=True, help="Talos version, e.g. v1.11.5")
    parser.add_argument(
        "--platform", help="push <platform>-installer (Talos >= 1.10) instead of installer"
    )
    parser.add_argument("--secureboot", action="store_true", help="the Secure Boot installer")
    parser.add_argument(
        "--registry",
        help="HOST[:PORT][/PREFIX] to push to (default: registry.url of the config)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="plain HTTP to --registry (default: config)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from imagefactory.commands.build_cmd import find_schematic
    from imagefactory.config import PushRegistry, load_config
    from imagefactory.installer_image import push_installer
    from imagefactory.versions import TalosVersion

    config = load_config(args.config)
    registry = config.registry
    if args.registry:
        fields: dict[str, Any] = {}
        if registry is not None:
            fields = {
                "insecure": registry.insecure,
                "username": registry.username,
                "password_env": registry.password_env,
                "signing_key": registry.signing_key,
            }
        registry = PushRegistry.parse(args.registry, **fields)
    if registry is not None and args.insecure:
        registry = replace(registry, insecure=True)
    schematic = find_schematic(config, args.schematic)
    version = TalosVersion.parse(args.version)
    pushed = push_installer(
        config,
        schematic,
        version,
        platform=args.platform,
        secureboot=args.secureboot,
        registry=registry,
    )
    print(pushed.reference)
    return 0
