"""Compress a sparse file without paying for its holes or for data that is compressed already.

The file is walked with SEEK_DATA/SEEK_HOLE in 1 MiB chunks. Holes (and all-zero chunks) become precomputed zero runs;
each data chunk is tried with zlib level 1 on a sample, and chunks that do not shrink are stored;
the rest goes through the plain tool at the profile's level. The pieces are concatenated frames,
streams or members, which every standard decompressor reads as one file.
"""

from __future__ import annotations

import enum
import errno
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from imagefactory import tools
from imagefactory.imager.formats.codecs import CODECS, Codec
from imagefactory.platforms import OutFormat

CHUNK = 1024 * 1024
# Largest piece handed to a tool or stored in one go: bounds memory.
MAX_PIECE = 32 * CHUNK
SAMPLE = 64 * 1024
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
    samples = [chunk[:SAMPLE], chunk[len(chunk) // 2 : len(chunk) // 2 + SAMPLE]]
    for sample in samples:
        if sample and len(zlib.compress(sample, 1)) < STORE_RATIO * len(sample):
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
        data = _next_data(fd, offset, size)
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


def _next_data(fd: int, offset: int, size: int) -> int:
    try:
        return os.lseek(fd, offset, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # only a hole is left
            return size
        raise


def compress_file(src: Path, out: Path, out_format: OutFormat) -> None:
    """Write `src` compressed as `out_format` (.zst, .xz, .gz) to `out`."""
    codec = CODECS[out_format]
    fd = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        # Unbuffered: the tool writes through the same file description, at the same offset.
        with out.open("wb", buffering=0) as sink:
            for piece in pieces(fd, size):
                _write_piece(codec, piece, fd, sink)
            if size == 0:
                tools.run(codec.argv, stdin=b"", stdout=sink)
    finally:
        os.close(fd)


def _write_piece(codec: Codec, piece: tuple[Kind, int, int], fd: int, sink: BinaryIO) -> None:
    kind, offset, length = piece
    if kind is Kind.ZEROS:
        sink.write(codec.zeros(length))
        return
    data = os.pread(fd, length, offset)
    if kind is Kind.STORE:
        sink.write(codec.stored(data))
    else:
        tools.run(codec.argv, stdin=data, stdout=sink)
