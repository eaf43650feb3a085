"""`imagefactory lock`, `versions` and `extensions`: the pinned, verified view of upstream sources.

`versions` and `extensions` read the lock when there is one, else the source itself.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from imagefactory.commands import common_options

if TYPE_CHECKING:
    from imagefactory.config import Config


def register(subparsers: Any) -> None:
    common = [common_options()]
    lock = subparsers.add_parser(
        "lock", parents=common, help="resolve and verify sources into the lock file"
    )
    lock.add_argument(
        "--check", action="store_true", help="exit 1 when the lock no longer matches the sources"
    )
    lock.set_defaults(func=run_lock)
    versions = subparsers.add_parser("versions", parents=common, help="list Talos versions")
    versions.set_defaults(func=run_versions)
    extensions = subparsers.add_parser(
        "extensions", parents=common, help="list official extensions of a Talos version"
    )
    extensions.add_argument("version")
    extensions.set_defaults(func=run_extensions)


def run_lock(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.sources import lock_differences, make_lock, read_lock, write_lock

    config = load_config(args.config)
    fresh = make_lock(config)
    if args.check:
        diffs = lock_differences(read_lock(config), fresh)
        for line in diffs:
            print(line)
        if diffs:
            print(f"{config.lock_path}: out of date ({len(diffs)} differences)", file=sys.stderr)
            return 1
        print(f"{config.lock_path}: up to date")
        return 0
    path = write_lock(config, fresh)
    count = len(fresh["versions"])
    print(f"{path}: {count} versions locked, every image verified")
    return 0


def _locked_versions(config: Config) -> dict[str, Any] | None:
    from imagefactory.sources import read_lock

    return read_lock(config)["versions"] if config.lock_path.exists() else None


def run_versions(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.versions import TalosVersion

    config = load_config(args.config)
    locked = _locked_versions(config)
    if locked is not None:
        versions = sorted(TalosVersion.parse(tag) for tag in locked)
    else:
        from imagefactory.sources import SourceReader

        versions = SourceReader(config).selected_versions()
    for version in versions:
        print(version.tag)
    return 0


def run_extensions(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.errors import NotFound
    from imagefactory.versions import TalosVersion

    config = load_config(args.config)
    tag = TalosVersion.parse(args.version).tag
    locked = _locked_versions(config)
    if locked is not None:
        if tag not in locked:
            raise NotFound(f"version {tag} is not available")
        names = list(locked[tag]["extensions"])
    else:
        from imagefactory.sources import SourceReader

        reader = SourceReader(config)
        if TalosVersion.parse(tag) not in reader.selected_versions():
            raise NotFound(f"version {tag} is not available")
        catalog = reader.pin(config.sources.components.extensions, tag)
        names = sorted(ext.name for ext in reader.extensions(catalog))
    for name in names:
        print(name)
    return 0
