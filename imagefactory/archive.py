"""Reproducible archives through imagefactory.tools.run: cpio newc, squashfs, xz and zstd streams.

Owners, times and thread settings are fixed here, so one tree gives the same bytes on any machine.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from imagefactory import tools
from imagefactory.errors import BuildError
from imagefactory.quirks import Compression

ZSTD_LEVEL = 18  # upstream's ZSTD_COMPRESSION_LEVEL
# xz's multi-threaded mode writes sized blocks, and whether xz picks it (-T0 on one core, a memory
# limit that drops to one thread, xz 5.2 against 5.4) depends on the machine: single-threaded only.
XZ_THREADS = 1
# zstd's multi-threaded frames do not depend on the worker count (tests check 1, 2, 4 workers and
# one CPU); only --single-thread differs. So all cores, as upstream runs it.
ZSTD_THREADS = 0


class XzPreset(enum.StrEnum):
    """xz presets: Talos packs its initramfs with -9, the imager appends extensions with -0 -e."""

    INITRAMFS = "-9"
    EXTENSIONS = "-0e"


def cpio_newc(
    root: Path,
    names: Sequence[str],
    sink: IO[bytes],
    *,
    mtime: int,
) -> None:
    """Write a newc archive of `names` (relative to root, in the given order) to sink.

    Every entry is root-owned and set to `mtime` first; inode and device numbers are renumbered.
    """
    listing = bytearray()
    for name in names:
        encoded = os.fsencode(name)
        if not encoded or b"\n" in encoded or encoded.startswith(b"/"):
            raise BuildError(f"cpio: bad entry name {name!r}")
        os.utime(root / name, (mtime, mtime), follow_symlinks=False)
        listing += encoded + b"\n"
    tools.run(
        [
            "cpio",
            "--create",
            "--format=newc",
            "--reproducible",
            "--owner=+0:+0",
            "--quiet",
        ],
        cwd=root,
        stdin=bytes(listing),
        stdout=sink,
    )


def compress(
    source: Path,
    sink: IO[bytes],
    compression: Compression,
    *,
    xz_preset: XzPreset = XzPreset.INITRAMFS,
) -> None:
    """Append source, compressed as a stream (no size in the header, as upstream pipes it), to sink.

    xz carries a CRC32 check: the kernel's decoder rejects the default CRC64.
    """
    if compression is Compression.XZ:
        argv = [
            "xz",
            "--compress",
            "--check=crc32",
            str(xz_preset),
            f"--threads={XZ_THREADS}",
            "--stdout",
            "--quiet",
        ]
    else:
        argv = [
            "zstd",
            f"-{ZSTD_LEVEL}",
            f"--threads={ZSTD_THREADS}",
            "--stdout",
            "--no-progress",
            "--quiet",
        ]
    sink.flush()
    with source.open("rb") as src:
        tools.run(argv, stdin=src, stdout=sink)


def squashfs(
    root: Path,
    out: Path,
    compression_args: Sequence[str],
    *,
    mtime: int,
    exclude: Sequence[str] = (),
) -> Path:
    """A squashfs of root at out: root-owned, every time `mtime`, no xattrs, `exclude` left out.

    `compression_args` are the version's `-comp ...` options (Quirks.squashfs_compression_args);
    `exclude` names paths relative to root.
    """
    tools.run(
        [
            # mksquashfs 4.5 refuses -all-time while SOURCE_DATE_EPOCH is set, and that only clamps.
            "env", "-u", "SOURCE_DATE_EPOCH",
            "mksquashfs",
            root,
            out,
            "-noappend",
            "-no-progress",
            "-quiet",
            "-all-root",
            # Rootless unpacking can't carry SELinux labels; don't leak the host's xattrs.
            "-no-xattrs",
            "-mkfs-time", str(mtime),
            "-all-time", str(mtime),
            *compression_args,
            # -e takes the rest of the command line.
            *(("-e", *exclude) if exclude else ()),
        ]
    )  # fmt: skip
    return out
