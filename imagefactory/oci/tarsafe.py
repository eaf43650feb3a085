"""Applying one layer tar onto a root directory, refusing anything that would escape it.

Whiteouts and opaque directories follow the OCI layer spec; device nodes are skipped, owners ignored.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from imagefactory.errors import BuildError
from imagefactory.oci.digest import CHUNK

log = logging.getLogger(__name__)

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# Opened without following a symlink in the last component, never a device or fifo.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class _DirMode:
    """A directory's mode and mtime, set after its contents, only if it is still that directory."""

    parts: tuple[str, ...]  # real path below the root
    mode: int
    mtime: int
    device: int
    inode: int


class _Layer:
    """State of one layer being applied: the root, what it created, directory modes to set last."""

    def __init__(self, root: Path, what: str) -> None:
        self.root = Path(os.path.realpath(root))
        self.what = what
        self.created: set[str] = set()
        # Keyed by path: a later entry for the same directory replaces the earlier one.
        self.dir_modes: dict[tuple[str, ...], _DirMode] = {}

    def refuse(self, name: str, why: str) -> BuildError:
        return BuildError(f"{self.what}: entry {name!r}: {why}")

    def inside(self, path: str) -> bool:
        return path == str(self.root) or path.startswith(str(self.root) + os.sep)

    def parts(self, name: str) -> list[str]:
        if name.startswith("/"):
            raise self.refuse(name, "absolute path")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(name, "path contains '..'")
        return parts

    def parent(self, name: str, parts: list[str]) -> Path:
        """The real directory holding the entry, created as needed, never outside the root."""
        current = self.root
        for part in parts[:-1]:
            nxt = current / part
            if nxt.is_symlink():
                real = os.path.realpath(nxt)
                if not self.inside(real):
                    raise self.refuse(name, f"goes through symlink {part!r} out of the root")
                nxt = Path(real)
            if not os.path.lexists(nxt):
                nxt.mkdir(mode=0o755)
            elif not nxt.is_dir():
                raise self.refuse(name, f"{part!r} is not a directory")
            current = nxt
        return current

    def defer_mode(self, path: Path, mode: int, mtime: int) -> None:
        info = path.lstat()
        parts = path.relative_to(self.root).parts
        self.dir_modes.pop(parts, None)
        self.dir_modes[parts] = _DirMode(parts, mode, mtime, info.st_dev, info.st_ino)

    def mark(self, parts: list[str]) -> None:
        for i in range(1, len(parts) + 1):
            self.created.add("/".join(parts[:i]))


def _remove(path: Path) -> None:
    """Remove a file, symlink or directory tree at path, never following a symlink."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)  # refuses a symlink and walks by fd, so it stays below path
    else:
        path.unlink()


def _symlink_escapes(parts: list[str], target: str) -> bool:
    """True if a relative link target climbs above the root from the link's directory."""
    if target.startswith("/"):
        return False  # resolved against the image root by whoever runs the image
    depth = len(parts) - 1
    for piece in target.split("/"):
        if piece == "..":
            depth -= 1
            if depth < 0:
                return True
        elif piece not in ("", "."):
            depth += 1
    return False


def _write_file(path: Path, source: IO[bytes], mode: int, mtime: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK)
        out.flush()
        os.fchmod(out.fileno(), mode)
        os.utime(out.fileno(), (mtime, mtime))


@contextlib.contextmanager
def _open_dir(root: Path, parts: tuple[str, ...]) -> Iterator[int | None]:
    """An fd of root/parts walked one component at a time without following any symlink.

    None when a component is gone or is no longer a directory (a later entry replaced it).
    """
    fds = [os.open(root, DIR_FLAGS)]
    try:
        for part in parts:
            try:
                fds.append(os.open(part, DIR_FLAGS, dir_fd=fds[-1]))
            except (FileNotFoundError, NotADirectoryError):
                yield None
                return
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # a symlink now stands where the directory was
                    yield None
                    return
                raise
        yield fds[-1]
    finally:
        for fd in fds:
            os.close(fd)


def _set_dir_modes(layer: _Layer) -> None:
    # Last entry first so a read-only parent is set after its children were.
    for entry in reversed(layer.dir_modes.values()):
        with _open_dir(layer.root, entry.parts) as fd:
            if fd is None:
                log.debug("%s: %s was replaced; its mode is not set", layer.what, entry.parts)
                continue
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) != (entry.device, entry.inode):
                continue  # another directory now stands there; it is inside the root either way
            os.fchmod(fd, entry.mode)
            os.utime(fd, (entry.mtime, entry.mtime))


def apply_layer(stream: BinaryIO, root: Path, what: str) -> None:
    """Apply the (optionally gzip/xz-compressed) layer tar read from `stream` onto `root`."""
    layer = _Layer(root, what)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                _apply(layer, tar, member)
        _set_dir_modes(layer)
    except tarfile.TarError as exc:
        raise BuildError(f"{what}: not a valid layer tar: {exc}") from None
    except OSError as exc:
        raise BuildError(f"{what}: cannot unpack: {exc}") from None


def _apply(layer: _Layer, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    name = member.name
    parts = layer.parts(name)
    if not parts:
        return
    parent = layer.parent(name, parts)
    base = parts[-1]
    if base == OPAQUE:
        prefix = "/".join(parts[:-1])
        for child in list(parent.iterdir()):
            rel = f"{prefix}/{child.name}" if prefix else child.name
            if rel not in layer.created:
                _remove(child)
        return
    if base.startswith(WHITEOUT):
        hidden = base.removeprefix(WHITEOUT)
        if hidden in ("", ".", ".."):  # '/' cannot occur: base is one path component
            raise layer.refuse(name, f"whiteout of {hidden!r} names no entry of its directory")
        _remove(parent / hidden)
        return
    path = parent / base
    mode = member.mode & 0o7777
    if member.isdir():
        if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
            path.unlink()
        path.mkdir(mode=0o755, exist_ok=True)
        layer.defer_mode(path, mode, int(member.mtime))
    elif member.issym():
        if _symlink_escapes(parts, member.linkname):
            raise layer.refuse(name, f"symlink to {member.linkname!r} leaves the root")
        _remove(path)
        os.symlink(member.linkname, path)
    elif member.islnk():
        source = _hardlink_source(layer, name, member.linkname)
        _remove(path)
        os.link(source, path, follow_symlinks=False)
    elif member.isreg():
        data = tar.extractfile(member)
        if data is None:
            raise layer.refuse(name, "unreadable file entry")
        _remove(path)
        _write_file(path, data, mode, int(member.mtime))
    else:
        log.info("%s: skipping %s (device nodes and fifos are not unpacked)", layer.what, name)
        return
    layer.mark(parts)


def _hardlink_source(layer: _Layer, name: str, linkname: str) -> Path:
    if linkname.startswith("/"):
        raise layer.refuse(name, f"hard link to absolute path {linkname!r}")
    parts = [p for p in linkname.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise layer.refuse(name, f"hard link to {linkname!r} leaves the root")
    source = layer.parent(name, parts) / parts[-1]
    if not os.path.lexists(source):
        raise layer.refuse(name, f"hard link to missing {linkname!r}")
    if source.is_dir() and not source.is_symlink():
        raise layer.refuse(name, f"hard link to directory {linkname!r}")
    # A hard link to a symlink is a copy of it: its relative target must not escape from here.
    if source.is_symlink() and _symlink_escapes(layer.parts(name), os.readlink(source)):
        raise layer.refuse(
            name, f"hard link to symlink {linkname!r} that leaves the root from here"
        )
    return source
