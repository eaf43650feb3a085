"""Reading and writing the factory's own small files safely.

Reads take regular files only, bounded while reading (a FIFO, a device or /dev/zero never hangs or
fills memory); writes go to a temporary name beside the target, then rename, so no reader sees half.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from imagefactory.errors import BuildError, InvalidInput

# errnos that say the path the user gave is wrong, not that the machine is in trouble.
_USER_ERRNOS = {
    errno.ENOENT: "no such file",
    errno.ENOTDIR: "a parent is not a directory",
    errno.EISDIR: "is a directory",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENAMETOOLONG: "file name too long",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENXIO: "no such device or address",
}


def shown(value: object, limit: int = 200) -> str:
    """A user-supplied value as echoed in an error line: capped, so a huge input stays one line."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def read_bounded(path: Path | str, limit: int, what: str) -> bytes:
    """The bytes of the regular file `path`, refusing anything else and anything over `limit`.

    `what` names the file's role in errors ("schematic", "config", "lock"). O_NONBLOCK keeps the
    open of a FIFO from waiting for a writer; the size check happens while reading, since a file
    can grow, and /proc files report size 0.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise os_error(exc, path, what) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InvalidInput(f"{shown(path)}: is a directory; cannot read {what}")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"{shown(path)}: not a regular file; cannot read {what}")
        if info.st_size > limit:
            raise InvalidInput(f"{shown(path)}: {what} is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise InvalidInput(f"{shown(path)}: {what} is larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise os_error(exc, path, what) from None
    finally:
        os.close(fd)


def os_error(exc: OSError, path: Path | str, what: str) -> InvalidInput | BuildError:
    """An OSError on a path as one plain line: the user's mistake (exit 2) or the machine's (1)."""
    reason = _USER_ERRNOS.get(exc.errno or 0)
    if reason is not None:
        return InvalidInput(f"{shown(path)}: {reason}; cannot read {what}")
    return BuildError(f"{shown(path)}: {exc.strerror or exc}; cannot read {what}")


def error_of(exc: OSError) -> InvalidInput | BuildError:
    """Any OSError as one plain line naming its file: bad input (exit 2) or environment (1)."""
    names = [shown(name) for name in (exc.filename, exc.filename2) if name is not None]
    reason = exc.strerror or type(exc).__name__
    message = f"{' -> '.join(names)}: {reason}" if names else reason
    if exc.errno in _USER_ERRNOS or exc.errno == errno.EEXIST:
        return InvalidInput(message)
    return BuildError(message)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` with `mode`; on any error nothing new is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
