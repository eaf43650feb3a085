"""The build process the server spawns: the same build code as `imagefactory build`, plus sidecars.

`python -m server.worker --config C --schematic FILE --version V --asset A --dest DIR` builds the
asset into the store, then places DIR/A with its `.sha256` and `.sha512` beside it: all written to
a temporary directory first, sidecars renamed into place before the asset, so a reader that finds
the asset finds it whole. The last line on stdout is JSON: {"status": 200} or {"status", "error"}.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

from imagefactory import tree
from imagefactory.build import build_asset
from imagefactory.cli import one_line
from imagefactory.commands import read_schematic
from imagefactory.config import load_config
from imagefactory.errors import FactoryError, InvalidInput
from imagefactory.versions import TalosVersion

# ".sha256" -> hashlib's "sha256": the suffixes are declared once, in tree.
CHECKSUMS = {suffix: suffix.removeprefix(".") for suffix in tree.CHECKSUM_SUFFIXES}


def place(built: Path, dest_dir: Path, name: str) -> Path:
    """Link (or copy) into dest_dir/name with checksum sidecars; nothing partial is ever visible.

    A hard link is enough here: both names live in the store, which nothing edits in place.
    """
    if "/" in name or name in {"", ".", ".."}:
        raise InvalidInput(f"invalid asset path: {name!r}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".work-"))
    try:
        try:
            os.link(built, work / name)
        except OSError:
            shutil.copyfile(built, work / name)
        # Both digests at once: hashlib releases the GIL, so two cores share the work.
        with ThreadPoolExecutor(len(CHECKSUMS)) as pool:
            digests = dict(
                zip(
                    CHECKSUMS,
                    pool.map(lambda a: _digest(work / name, a), CHECKSUMS.values()),
                    strict=True,
                )
            )
        for suffix, digest in digests.items():
            (work / (name + suffix)).write_text(tree.checksum_line(digest, name))
        for suffix in digests:
            os.replace(work / (name + suffix), dest_dir / (name + suffix))
        os.replace(work / name, dest_dir / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest_dir / name


def _digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind through every `finally`, so temporary files and directories go with the process.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="server.worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--schematic", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--asset", required=True)
    parser.add_argument("--dest", required=True, type=Path)
    parser.add_argument("--external-url")
    args = parser.parse_args(argv)
    # Its own process group: the server stops the build and every tool it started at once.
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        config = load_config(args.config)
        if args.external_url:
            config = dataclasses.replace(config, external_url=args.external_url)
        schematic = read_schematic(args.schematic)
        built = build_asset(config, schematic, TalosVersion.parse(args.version), args.asset)
        place(built, args.dest, args.asset)
        result: dict[str, object] = {"status": 200}
        code = 0
    except FactoryError as exc:
        result = {"status": exc.http_status, "error": one_line(str(exc))}
        code = exc.exit_code
    except OSError as exc:
        result = {"status": 500, "error": one_line(f"{exc.strerror or exc}")}
        code = 1
    print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
