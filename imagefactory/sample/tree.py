"""Deterministic file trees of the sample release, packed with imagefactory.archive.

Every entry gets a fixed mode and mtime, so the same inputs give byte-identical archives.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagefactory import archive
from imagefactory.errors import BuildError
from imagefactory.quirks import Compression


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


def cpio_newc(root: Path, out: Path, mtime: int | None = None) -> Path:
    """`find . | LC_ALL=C sort | cpio --reproducible -H newc -o -R +0:+0`, as upstream packs it.

    Every entry gets `mtime`; by default the root's, which materialize and fix_tree set.
    """
    names = ["."] + [f"./{p.relative_to(root)}" for p in sorted_paths(root)]
    fixed = int(os.lstat(root).st_mtime) if mtime is None else mtime
    with out.open("wb") as sink:
        archive.cpio_newc(root, names, sink, mtime=fixed)
    return out


def compress(source: Path, out: Path, compression: Compression) -> Path:
    """Talos's initramfs compression (xz -9 or zstd -18) of source into out."""
    with out.open("wb") as sink:
        archive.compress(source, sink, compression, xz_preset=archive.XzPreset.INITRAMFS)
    return out


def mksquashfs(root: Path, out: Path, compressor: Sequence[str], mtime: int) -> Path:
    """A reproducible squashfs of root: all files root-owned, fixed times, no xattrs.

    `compressor` is the version's `-comp ...` options (Quirks.squashfs_compression_args).
    """
    return archive.squashfs(root, out, compressor, mtime=mtime)
