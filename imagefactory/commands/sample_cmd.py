"""`imagefactory sample-release`: build the Talos-shaped sample release and a config that uses it.

Writes an OCI layout in DIR/oci (or pushes to --push HOST:PORT), DIR/cosign.{key,pub}, DIR/config.yaml.
"""

from __future__ import annotations

import argparse
import shutil
import time
from typing import Any

from imagefactory.commands import common_options, output_directory
from imagefactory.errors import InvalidInput
from imagefactory.files import shown
from imagefactory.sample.versions import DEFAULT_VERSIONS, SampleVersion, parse_versions


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sample-release",
        parents=[common_options()],
        help="build the sample release (Debian kernel, busybox init) and a config using it",
    )
    parser.add_argument("--out", required=True, type=output_directory, help="output directory")
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


# squashfs, cpio and ISO 9660 keep 32-bit file times: a version whose fixed epoch is later cannot
# be built, so it is refused before anything is written.
MAX_EPOCH = (1 << 32) - 1


def _checked_versions(text: str) -> tuple[SampleVersion, ...]:
    if len(text) > 4096:
        raise InvalidInput("--versions is longer than 4096 characters")
    versions = parse_versions(text)
    for version in versions:
        if version.source_date_epoch > MAX_EPOCH:
            raise InvalidInput(
                f"sample version {shown(version.tag, 40)} is too new: its fixed file date "
                "does not fit the 32-bit times of squashfs, cpio and ISO 9660"
            )
    return versions


def run(args: argparse.Namespace) -> int:
    from imagefactory.sample.release import ReleaseRequest, build_release

    started = time.monotonic()
    request = ReleaseRequest(
        out=args.out,
        versions=_checked_versions(args.versions),
        push=args.push,
        namespace=args.namespace,
    )
    created = not args.out.exists()
    try:
        release = build_release(request)
    except BaseException:
        if created:  # a failed release leaves nothing behind, unless --out was there before
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    elapsed = time.monotonic() - started
    for image in release.images:
        print(f"{request.origin}/{image.repository}:{image.tag}@{image.digest}")
    print(
        f"{release.config}: {len(release.images)} images for "
        f"{', '.join(v.tag for v in request.versions)} in {request.source}, "
        f"signed with {release.public_key} ({elapsed:.0f} s)"
    )
    return 0
