"""`imagefactory sample-release`: build the Talos-shaped sample release and a config that uses it.

Writes an OCI layout in DIR/oci (or pushes to --push HOST:PORT), DIR/cosign.{key,pub}, DIR/config.yaml.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from imagefactory.commands import common_options
from imagefactory.sample.versions import DEFAULT_VERSIONS, parse_versions


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sample-release",
        parents=[common_options()],
        help="build the sample release (Debian kernel, busybox init) and a config using it",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--push",
        metavar="HOST:PORT",
        help="push to this registry over plain HTTP instead of writing DIR/oci",
    )
    parser.add_argument(
        "--versions",
        default=",".join(DEFAULT_VERSIONS),
        help="comma-separated Talos tags (default: %(default)s)",
    )
    parser.add_argument(
        "--namespace", default="", help="repository prefix before siderolabs/ (e.g. mirror)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imagefactory.sample.release import ReleaseRequest, build_release

    started = time.monotonic()
    request = ReleaseRequest(
        out=args.out,
        versions=parse_versions(args.versions),
        push=args.push,
        namespace=args.namespace,
    )
    release = build_release(request)
    elapsed = time.monotonic() - started
    for image in release.images:
        print(f"{request.origin}/{image.repository}:{image.tag}@{image.digest}")
    print(
        f"{release.config}: {len(release.images)} images for "
        f"{', '.join(v.tag for v in request.versions)} in {request.source}, "
        f"signed with {release.public_key} ({elapsed:.0f} s)"
    )
    return 0
