"""Files with holes: where the next data is (SEEK_DATA), shared by whatever skips holes."""

from __future__ import annotations

import errno
import os


def next_data(fd: int, offset: int, size: int) -> int:
    """The offset of the first data at or after `offset` in the open file, or `size` if only a hole
    is left."""
    try:
        return os.lseek(fd, offset, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return size
        raise
