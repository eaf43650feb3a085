"""The three compressed formats as concatenations: zstd frames, xz streams, gzip members.

Each codec knows how to write a run of zeros (cached, no tool run) and a run stored as is (zstd raw
blocks, xz LZMA2 uncompressed chunks, deflate stored blocks); real compression is the tool's job.
"""

from __future__ import annotations

import functools
import lzma
import struct
import zlib

from imagefactory.platforms import OutFormat

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_BLOCK = 128 * 1024
# Frame header descriptor 0 (no content size, no checksum) + window 128 KiB (exponent 7).
_ZSTD_HEADER = ZSTD_MAGIC + b"\x00\x38"
_ZSTD_RAW, _ZSTD_RLE = 0, 1
LZMA2_CHUNK = 64 * 1024
XZ_MAGIC = b"\xfd7zXZ\x00"
_XZ_FLAGS_CRC32 = b"\x00\x01"


class Codec:
    """One output compression: its tool argv at the profile's level, zeros and stored runs.

    `argv` + files compresses each file F to F + `suffix` (and removes F), all in one run.
    """

    out_format: OutFormat
    argv: tuple[str, ...]
    suffix: str
    # Runs of zeros are repeats of one compressed piece of this size, plus a power-of-two split
    # of the rest. Each distinct piece is compressed once per process, at the codec's own speed
    # on zeros; a piece too small costs its framing in every repeat.
    big_zeros: int

    def zeros(self, length: int) -> bytes:
        """`length` zero bytes, compressed: whole `big_zeros` pieces plus a power-of-two split."""
        if length <= 0:
            return b""
        big = self.big_zeros
        parts = [self._zeros(big)] * (length // big)
        rest = length % big
        bit = 1
        while rest:
            if rest & bit:
                parts.append(self._zeros(bit))
                rest -= bit
            bit <<= 1
        return b"".join(parts)

    def _zeros(self, length: int) -> bytes:
        raise NotImplementedError

    def stored(self, data: bytes) -> bytes:
        raise NotImplementedError


class Zstd(Codec):
    out_format = OutFormat.ZSTD
    argv = ("zstd", "-18", "-T0", "-q", "--rm")
    suffix = ".zst"
    big_zeros = 0  # RLE blocks: no pieces

    def zeros(self, length: int) -> bytes:
        # RLE blocks: any length in one frame, 4 bytes per 128 KiB.
        if length <= 0:
            return b""
        full, rest = divmod(length, ZSTD_BLOCK)
        if not rest:
            full, rest = full - 1, ZSTD_BLOCK
        # Every block but the last is the same four bytes: repeat them rather than build each.
        return (
            _ZSTD_HEADER
            + _ZSTD_FULL_RLE * full
            + _zstd_block_header(rest, _ZSTD_RLE, last=True)
            + b"\0"
        )

    def stored(self, data: bytes) -> bytes:
        if not data:
            return b""
        view = memoryview(data)
        parts = [_ZSTD_HEADER]
        for start in range(0, len(view), ZSTD_BLOCK):
            block = view[start : start + ZSTD_BLOCK]
            last = start + ZSTD_BLOCK >= len(view)
            parts += [_zstd_block_header(len(block), _ZSTD_RAW, last=last), bytes(block)]
        return b"".join(parts)


def _zstd_block_header(size: int, kind: int, *, last: bool) -> bytes:
    return (size << 3 | kind << 1 | int(last)).to_bytes(3, "little")


_ZSTD_FULL_RLE = _zstd_block_header(ZSTD_BLOCK, _ZSTD_RLE, last=False) + b"\0"


class Xz(Codec):
    out_format = OutFormat.XZ
    argv = ("xz", "-0", "-T0", "-q")
    suffix = ".xz"
    # liblzma spends about 20 ms per MiB of zeros; a 4 MiB stream is 744 bytes, 16 MiB 2576: a
    # quarter of the time for 15% more bytes of zeros (0.2 MB on an 11 GiB image).
    big_zeros = 4 * 1024 * 1024

    @functools.cache  # noqa: B019 - a handful of sizes per process, codecs are module singletons
    def _zeros(self, length: int) -> bytes:
        return lzma.compress(bytes(length), format=lzma.FORMAT_XZ, preset=0)

    def stored(self, data: bytes) -> bytes:
        if not data:
            return b""
        view = memoryview(data)
        chunks = []
        for start in range(0, len(view), LZMA2_CHUNK):
            chunk = view[start : start + LZMA2_CHUNK]
            control = b"\x01" if start == 0 else b"\x02"  # uncompressed, first resets the dict
            chunks += [control, struct.pack(">H", len(chunk) - 1), bytes(chunk)]
        chunks.append(b"\x00")
        payload = b"".join(chunks)
        # Block header: size, flags (one filter, no sizes), LZMA2 id 0x21, 1 property byte (dict
        # 4 KiB: uncompressed chunks need none), padding to 4, CRC32.
        header = b"\x02\x00\x21\x01\x00\x00\x00\x00"
        header += struct.pack("<I", zlib.crc32(header))
        block = header + payload + bytes(-len(payload) % 4) + struct.pack("<I", zlib.crc32(data))
        unpadded = len(header) + len(payload) + 4
        index = b"\x00" + _varint(1) + _varint(unpadded) + _varint(len(data))
        index += bytes(-len(index) % 4)
        index += struct.pack("<I", zlib.crc32(index))
        stream_header = XZ_MAGIC + _XZ_FLAGS_CRC32 + struct.pack("<I", zlib.crc32(_XZ_FLAGS_CRC32))
        backward = struct.pack("<I", len(index) // 4 - 1) + _XZ_FLAGS_CRC32
        footer = struct.pack("<I", zlib.crc32(backward)) + backward + b"YZ"
        return stream_header + block + index + footer


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _gzip(data: bytes, level: int) -> bytes:
    # zlib's own gzip header: mtime 0, no name, so the bytes depend on the data only.
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


class Gzip(Codec):
    out_format = OutFormat.GZ
    # -n: no name and no time in the header, so the temporary file's name is not recorded.
    argv = ("pigz", "-6", "-n", "-q")
    suffix = ".gz"
    # Deflate cannot beat about 1:1000 on zeros however long the member: small pieces cost
    # only their 18-byte framing.
    big_zeros = 1024 * 1024

    @functools.cache  # noqa: B019
    def _zeros(self, length: int) -> bytes:
        return _gzip(bytes(length), 6)

    def stored(self, data: bytes) -> bytes:
        return _gzip(data, 0) if data else b""


CODECS: dict[OutFormat, Codec] = {
    OutFormat.ZSTD: Zstd(),
    OutFormat.XZ: Xz(),
    OutFormat.GZ: Gzip(),
    OutFormat.TAR_GZ: Gzip(),
}
