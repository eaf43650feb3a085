"""Files with holes: find the data runs (SEEK_DATA/SEEK_HOLE) and copy only non-zero blocks.

A disk image is mostly holes; nothing here reads or writes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from imagefactory.holes import next_data

# Zero detection granularity when copying: a file system block.
BLOCK = 4096
CHUNK = 1024 * 1024
_ZERO_CHUNK = bytes(CHUNK)


def data_runs(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of each data run of the open file, in order; holes are skipped."""
    offset = 0
    while offset < size:
        start = next_data(fd, offset, size)
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        offset = end


def copy_sparse(src: os.PathLike[str] | str, dst_fd: int, offset: int) -> None:
    """Write the non-zero blocks of `src` into `dst_fd` at `offset`, leaving zero blocks as holes."""
    fd = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for start, length in data_runs(fd, size):
            done = 0
            while done < length:
                chunk = os.pread(fd, min(CHUNK, length - done), start + done)
                if not chunk:
                    break
                if chunk != _ZERO_CHUNK[: len(chunk)]:
                    _write_nonzero(dst_fd, chunk, offset + start + done)
                done += len(chunk)
    finally:
        os.close(fd)


def _write_nonzero(fd: int, chunk: bytes, at: int) -> None:
    view = memoryview(chunk)
    zero = _ZERO_CHUNK[:BLOCK]
    pos = 0
    while pos < len(view):
        # Coalesce consecutive non-zero blocks into one write.
        if view[pos : pos + BLOCK] == zero[: len(view[pos : pos + BLOCK])]:
            pos += BLOCK
            continue
        end = pos + BLOCK
        while end < len(view) and view[end : end + BLOCK] != zero[: len(view[end : end + BLOCK])]:
            end += BLOCK
        os.pwrite(fd, view[pos:end], at + pos)
        pos = end
