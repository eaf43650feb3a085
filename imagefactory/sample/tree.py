"""Deterministic file trees and the archive tools that pack them (cpio, xz, zstd, mksquashfs).

Every entry gets a fixed mode and mtime, so the same inputs give byte-identical archives.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import BuildError
from imagefactory.quirks import Compression

# Fixed thread counts: xz -T0 and zstd single-thread mode change the output with the core count.
XZ_THREADS = "1"
ZSTD_THREADS = "1"
ZSTD_LEVEL = 18  # upstream's ZSTD_COMPRESSION_LEVEL


@dataclass(frozen=True)
class Entry:
    """One file, directory or symlink of a tree; `path` is relative, without a leading slash."""

    path: str
    mode: int = 0o644
    data: bytes | None = None
    source: Path | None = None
    link: str | None = None
    directory: bool = False

    def __post_init__(self) -> None:
        parts = self.path.split("/")
        if not self.path or self.path.startswith("/") or ".." in parts or "" in parts:
            raise BuildError(f"bad tree entry path {self.path!r}")
        kinds = [self.data is not None, self.source is not None, self.link is not None]
        if sum(kinds) + int(self.directory) != 1:
            raise BuildError(f"tree entry {self.path!r} must be exactly one kind")


def file(path: str, data: bytes | str, mode: int = 0o644) -> Entry:
    return Entry(path, mode, data=data.encode() if isinstance(data, str) else data)


def copy(path: str, source: Path, mode: int = 0o644) -> Entry:
    return Entry(path, mode, source=source)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, 0o777, link=target)


def directory(path: str, mode: int = 0o755) -> Entry:
    return Entry(path, mode, directory=True)


def materialize(entries: Iterable[Entry], root: Path, mtime: int) -> Path:
    """Write entries under root (parents made 0755), then set every mtime; return root."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        dest = root / entry.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if entry.directory:
            dest.mkdir(exist_ok=True)
        elif entry.link is not None:
            dest.symlink_to(entry.link)
            continue
        elif entry.source is not None:
            shutil.copyfile(entry.source, dest)
        else:
            dest.write_bytes(entry.data or b"")
        dest.chmod(entry.mode)
    fix_tree(root, mtime)
    return root


def fix_tree(root: Path, mtime: int) -> None:
    """Give every directory 0755 unless set, and every entry (root too) the fixed mtime."""
    for path in sorted_paths(root, include_root=True):
        if path.is_dir() and not path.is_symlink() and path.stat().st_mode & 0o777 != 0o755:
            path.chmod(0o755)
        os.utime(path, (mtime, mtime), follow_symlinks=False)


def sorted_paths(root: Path, *, include_root: bool = False) -> list[Path]:
    """Every path under root, parents before children, in byte order (LC_ALL=C sort of find)."""
    found = [root] if include_root else []
    found += list(root.rglob("*"))
    return sorted(found, key=lambda p: os.fsencode(p.relative_to(root)))


def cpio_newc(root: Path, out: Path) -> Path:
    """`find . | LC_ALL=C sort | cpio --reproducible -H newc -o -R +0:+0`, as upstream packs it."""
    names = [b"."] + [b"./" + os.fsencode(p.relative_to(root)) for p in sorted_paths(root)]
    with out.open("wb") as sink:
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
            stdin=b"\n".join(names) + b"\n",
            stdout=sink,
        )
    return out


def compress(source: Path, out: Path, compression: Compression) -> Path:
    """xz with a crc32 check (the kernel's decoder rejects crc64) or zstd -18, into out."""
    if compression is Compression.XZ:
        argv: list[str | os.PathLike[str]] = [
            "xz",
            "--check=crc32",
            "-9",
            f"--threads={XZ_THREADS}",
            "--stdout",
            source,
        ]
    else:
        argv = [
            "zstd",
            f"-{ZSTD_LEVEL}",
            f"-T{ZSTD_THREADS}",
            "--no-progress",
            "-q",
            "-c",
            source,
        ]
    with out.open("wb") as sink:
        tools.run(argv, stdout=sink)
    return out


def mksquashfs(root: Path, out: Path, compressor: Sequence[str], mtime: int) -> Path:
    """A reproducible squashfs of root: all files root-owned, fixed times, no xattrs.

    `compressor` is the version's `-comp ...` options (Quirks.squashfs_compression_args).
    """
    tools.run(
        [
            "mksquashfs",
            root,
            out,
            "-noappend",
            "-no-progress",
            "-quiet",
            "-all-root",
            "-no-xattrs",
            "-mkfs-time",
            str(mtime),
            "-all-time",
            str(mtime),
            *compressor,
        ]
    )
    return out
