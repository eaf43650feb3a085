"""The store: verified blobs by digest, build outputs checked on every hit, and its hygiene.

A blob enters under a temporary name, is checked against its digest, then renamed into place; a
build output is recorded (size, and a block digest whose holes cost nothing) when written and
checked when reused; scratch directories and lock files of dead builds are swept while others run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imagefactory.blockhash import block_digest
from imagefactory.errors import FactoryError, InvalidInput
from imagefactory.files import error_of, read_bounded, write_atomic
from imagefactory.oci.digest import add_verified, check_digest, file_chunks
from imagefactory.oci.target import Target


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest).removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def fetch(self, target: Target, repository: str, digest: str) -> Path:
        """The path of the blob, downloading and verifying it first unless already present."""
        path = self.path(digest)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            target.fetch_blob(repository, digest, path)
        return path

    def add_file(self, source: Path) -> str:
        source = Path(source)
        if not source.is_file():
            raise InvalidInput(f"store {self.root}: not a file: {source}")
        return add_verified(file_chunks(source), self.blobs, None, f"store {self.root}: {source}")

    def add_bytes(self, data: bytes) -> str:
        return add_verified([data], self.blobs, None, f"store {self.root}")


# ---- build outputs: verified on every hit -------------------------------------------------------

RECORD_SUFFIX = ".record"


def _record_path(final: Path) -> Path:
    return final.with_name(final.name + RECORD_SUFFIX)


def _stamp(info: os.stat_result) -> list[int]:
    # ctime cannot be set back by a user, so a rewrite that restores size and mtime still shows.
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


def _read_record(final: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(read_bounded(_record_path(final), 4096, "output record"))
    except (FactoryError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("size"), int):
        return None
    return record


def verified_output(final: Path) -> bool:
    """True when `final` is what was recorded when it was written.

    The size is checked on every hit; the digest only when the file's metadata changed since it
    was last checked (then the record learns the new metadata, if the store is writable).
    """
    record = _read_record(final)
    if record is None:
        return False
    try:
        info = os.stat(final)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size != record["size"]:
        return False
    if record.get("stamp") == _stamp(info):
        return True
    try:
        if block_digest(final) != record.get("blocks_sha256"):
            return False
    except OSError:
        return False
    with contextlib.suppress(OSError):
        write_atomic(_record_path(final), json.dumps({**record, "stamp": _stamp(info)}).encode())
    return True


def install_output(out: Path, final: Path) -> None:
    """Rename a finished output into place, recording its size and digest first."""
    size = os.stat(out).st_size
    record = {"size": size, "blocks_sha256": block_digest(out), "stamp": None}
    final.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(_record_path(final), json.dumps(record).encode())
    os.replace(out, final)
    with contextlib.suppress(OSError):
        stamp = _stamp(os.stat(final))
        write_atomic(_record_path(final), json.dumps({**record, "stamp": stamp}).encode())


# ---- locks and scratch directories that the dead leave behind safely ---------------------------

LOCK_SUFFIX = ".lock"
SCRATCH_PREFIXES = (".work-", ".unpack-")
_NEW_PREFIX = ".new-"
# Never-locked debris (a scratch directory not yet renamed, a blob download) is only removed when
# this old: nothing tells whether its writer is alive.
UNLOCKED_DEBRIS_SECONDS = 24 * 3600


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`.lock, so parallel builds of one key do the work once.

    The lock file is removed on release (while still held); a locker that finds it replaced
    locks again, so removal never lets two holders in.
    """
    lock_path = Path(f"{path}{LOCK_SUFFIX}")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(lock_path).st_ino
            except FileNotFoundError:
                current = -1
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)
    except OSError as exc:
        raise error_of(exc) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        os.close(fd)


def _try_lock(path: Path, flags: int) -> int | None:
    """An fd of `path` holding its flock, or None when someone alive holds it (or it is gone)."""
    try:
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def sweep(directory: Path) -> int:
    """Remove what dead builds left in `directory`: unheld scratch directories and lock files.

    A live build holds the flock of its scratch directory and of its lock file, so only the debris
    of dead ones can be locked here; safe while other builds run. Returns the number removed.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        name, path = entry.name, Path(entry.path)
        if name.startswith(SCRATCH_PREFIXES):
            fd = _try_lock(path, os.O_RDONLY | os.O_DIRECTORY)
            if fd is not None:
                try:
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
                finally:
                    os.close(fd)
        elif name.endswith(LOCK_SUFFIX) and not name.startswith("."):
            fd = _try_lock(path, os.O_RDWR)
            if fd is not None:
                try:
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        path.unlink()
                        removed += 1
                except OSError:
                    pass
                finally:
                    os.close(fd)
        elif name.startswith((_NEW_PREFIX, ".incoming.")):
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime > UNLOCKED_DEBRIS_SECONDS:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink()
                    removed += 1
    return removed


@contextlib.contextmanager
def scratch(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh directory parent/<prefix>XXXX, flock-held for its whole life, removed after.

    It is born under a `.new-` name and renamed once locked, so a sweeper never sees an unheld
    scratch directory of a live build. Dead builds' debris in `parent` is swept first.
    """
    try:
        parent.mkdir(parents=True, exist_ok=True)
        sweep(parent)
        new = Path(tempfile.mkdtemp(dir=parent, prefix=_NEW_PREFIX))
    except OSError as exc:
        raise error_of(exc) from None
    fd = os.open(new, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        work = parent / (prefix + new.name.removeprefix(_NEW_PREFIX))
        os.rename(new, work)
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        os.close(fd)
        shutil.rmtree(new, ignore_errors=True)
