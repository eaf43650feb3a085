"""A content digest of a file that costs nothing for its holes: sha256 over each block's sha256.

Disk images in the store are 4 to 11 GiB of which a few dozen MiB are data; hashing them whole
(to record and later check a build output) took most of a disk build. Here the file is cut into
fixed blocks and the digest is the sha256 of the concatenated block digests. A block that lies in a
hole, or reads as zeros, takes its digest from a table instead of being hashed, so the result
depends on the bytes only (a hole and written zeros give the same digest), never on the layout.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
from pathlib import Path

from imagefactory.holes import next_data

BLOCK = 1 << 20


@functools.cache
def _zero_digest(length: int) -> bytes:
    return hashlib.sha256(bytes(length)).digest()


def _read_exactly(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise OSError(errno.EIO, "file shrank while it was hashed")
        data += more
    return data


def block_digest(path: Path, block: int = BLOCK) -> str:
    """The hex sha256 of the concatenated sha256 of each `block`-byte block (the last may be short)."""
    outer = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        zeros = bytes(block)
        data_from = 0  # no data before this offset
        for start in range(0, size, block):
            length = min(block, size - start)
            if start >= data_from:
                data_from = next_data(fd, start, size)
            if start + length <= data_from:
                outer.update(_zero_digest(length))
                continue
            chunk = _read_exactly(fd, length, start)
            # Zeros written out (file system images are full of them) are not hashed either.
            if chunk == (zeros if length == block else bytes(length)):
                outer.update(_zero_digest(length))
            else:
                outer.update(hashlib.sha256(chunk).digest())
    finally:
        os.close(fd)
    return outer.hexdigest()
