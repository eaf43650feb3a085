"""Compress a sparse file without paying for its holes or for data that is compressed already.

The file is walked with SEEK_DATA/SEEK_HOLE in 64 KiB chunks. Holes (and all-zero chunks) become precomputed zero runs;
each data chunk is tried with zlib level 1 on a sample, and chunks that do not shrink are stored;
the rest goes through the plain tool at the profile's level. The pieces are concatenated frames,
streams or members, which every standard decompressor reads as one file.
"""

from __future__ import annotations

import enum
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from imagefactory import tools
from imagefactory.holes import next_data
from imagefactory.imager.formats.codecs import CODECS
from imagefactory.platforms import OutFormat

# Small enough that the zeros between file system metadata blocks stay out of the tool's input.
CHUNK = 64 * 1024
# Largest piece handed to a tool or stored in one go: bounds memory.
MAX_PIECE = 32 * 1024 * 1024
SAMPLE = 8 * 1024
# A sample that zlib -1 cannot shrink below this ratio is not worth the profile's level.
STORE_RATIO = 0.97
_ZERO = bytes(CHUNK)


class Kind(enum.Enum):
    ZEROS = "zeros"
    STORE = "store"
    COMPRESS = "compress"


def classify(chunk: bytes) -> Kind:
    if chunk == _ZERO[: len(chunk)]:
        return Kind.ZEROS
    # An eighth of the chunk tells compressed payload from metadata at a tenth of the cost.
    sample = chunk[:SAMPLE]
    if len(zlib.compress(sample, 1)) < STORE_RATIO * len(sample):
        return Kind.COMPRESS
    return Kind.STORE


def pieces(fd: int, size: int) -> Iterator[tuple[Kind, int, int]]:
    """(kind, offset, length) covering the whole file in order, adjacent same kinds merged."""
    pending: tuple[Kind, int, int] | None = None

    def emit(kind: Kind, offset: int, length: int) -> Iterator[tuple[Kind, int, int]]:
        nonlocal pending
        if (
            pending
            and pending[0] is kind
            and pending[1] + pending[2] == offset
            and (kind is Kind.ZEROS or pending[2] + length <= MAX_PIECE)
        ):
            pending = (kind, pending[1], pending[2] + length)
            return
        if pending:
            yield pending
        pending = (kind, offset, length)

    # Chunks sit on a fixed grid and are judged by their bytes, so the output depends only on the
    # content: where the file system happens to keep extents or holes must not change a byte.
    offset = 0
    while offset < size:
        data = next_data(fd, offset, size)
        aligned = min(size, data // CHUNK * CHUNK)
        if aligned > offset:
            yield from emit(Kind.ZEROS, offset, aligned - offset)
            offset = aligned
        if offset >= size:
            break
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        end = min(size, -(-hole // CHUNK) * CHUNK)
        for at in range(offset, end, CHUNK):
            chunk = os.pread(fd, min(CHUNK, end - at), at)
            yield from emit(classify(chunk), at, len(chunk))
        offset = end
    if pending:
        yield pending


def compress_file(src: Path, out: Path, out_format: OutFormat) -> None:
    """Write `src` compressed as `out_format` (.zst, .xz, .gz) to `out`.

    Every compressible piece goes through one run of the tool (one file each, so one frame, stream
    or member each: starting the tool at level 18 costs more than compressing a 64 KiB piece).
    """
    codec = CODECS[out_format]
    fd = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        plan = list(pieces(fd, size)) if size else [(Kind.COMPRESS, 0, 0)]
        with tempfile.TemporaryDirectory(prefix="compress-", dir=out.parent) as tmp:
            staged = {}
            for index, (kind, offset, length) in enumerate(plan):
                if kind is Kind.COMPRESS:
                    staged[index] = Path(tmp, f"{index:08d}")
                    staged[index].write_bytes(os.pread(fd, length, offset))
            if staged:
                tools.run([*codec.argv, *staged.values()])
            with out.open("wb") as sink:
                for index, (kind, offset, length) in enumerate(plan):
                    if kind is Kind.ZEROS:
                        sink.write(codec.zeros(length))
                    elif kind is Kind.STORE:
                        sink.write(codec.stored(os.pread(fd, length, offset)))
                    else:
                        done = staged[index].with_name(staged[index].name + codec.suffix)
                        sink.write(done.read_bytes())
                        done.unlink()
    finally:
        os.close(fd)
