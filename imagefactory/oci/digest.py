"""Digest syntax, hashing helpers and the verify-then-rename writer.

Everything that moves blob bytes goes through here, so every byte is hashed exactly once.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from imagefactory.errors import BuildError, InvalidInput

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


def check_digest(digest: str) -> str:
    """Return `digest` if it is a well-formed sha256 digest, else raise InvalidInput."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidInput(f"not a sha256 digest: {digest!r} (want sha256:<64 lowercase hex>)")
    return digest


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> tuple[str, int]:
    """Digest and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to `inner`."""

    def __init__(self, inner: Writable) -> None:
        super().__init__()
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(b)
        self.hash.update(view)
        self.inner.write(view)  # type: ignore[arg-type]
        self.size += len(view)
        return len(view)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class VerifyingReader(io.RawIOBase):
    """A read stream that hashes what it returns and raises BuildError at EOF on mismatch.

    close() reads whatever the caller left unread, so a reader that stops early (tarfile stops
    at the end-of-archive blocks) still gets the check: junk after the part it used fails too.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        digest: str,
        what: str,
        close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._read = read
        self._close = close
        self._digest = digest
        self._what = what
        self._hash = hashlib.sha256()
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._done:
            return 0
        view = memoryview(buffer).cast("B")
        data = self._read(len(view))
        if not data:
            self._done = True
            got = "sha256:" + self._hash.hexdigest()
            if got != self._digest:
                raise BuildError(
                    f"{self._what}: digest mismatch: expected {self._digest}, got {got}"
                )
            return 0
        self._hash.update(data)
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        try:
            rest = bytearray(CHUNK)
            while not self._done:
                self.readinto(rest)
        finally:
            if self._close is not None:
                self._close()
            super().close()


def buffered(raw: io.RawIOBase) -> BinaryIO:
    return cast(BinaryIO, io.BufferedReader(raw, buffer_size=CHUNK))


def write_verified(chunks: Iterable[bytes], dest: Path, digest: str | None, what: str) -> str:
    """Write chunks to a temporary name beside dest, check the digest, then rename into place.

    With digest None any content is accepted and its digest returned. Nothing stays on error.
    """
    return _write(chunks, dest.parent, lambda _: dest, digest, what)


def add_verified(chunks: Iterable[bytes], directory: Path, digest: str | None, what: str) -> str:
    """Like write_verified, but the file is named by the hex of its digest inside `directory`."""

    def name(got: str) -> Path:
        return directory / got.removeprefix("sha256:")

    return _write(chunks, directory, name, digest, what)


def _write(
    chunks: Iterable[bytes],
    directory: Path,
    name: Callable[[str], Path],
    digest: str | None,
    what: str,
) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".incoming.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            writer = HashingWriter(raw)
            for chunk in chunks:
                writer.write(chunk)
        got = writer.digest
        if digest is not None and got != digest:
            raise BuildError(f"{what}: digest mismatch: expected {digest}, got {got}")
        tmp.chmod(0o644)
        tmp.replace(name(got))
        return got
    finally:
        tmp.unlink(missing_ok=True)


def file_chunks(path: Path, size: int = CHUNK) -> Iterable[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk
