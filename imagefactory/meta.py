"""META encodings: the `0xK=V;…` text, its base64 (+gzip) kernel-argument form, and the META partition.

The partition is the Talos ADV (two 256 KiB copies) with the legacy syslinux ADV in its last 1024 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import zlib
from collections.abc import Iterable, Mapping

from imagefactory.errors import InvalidInput
from imagefactory.schematic import MetaValue

ENV_VAR = "INSTALLER_META_BASE64"
GZIP_THRESHOLD = 256
PARTITION_SIZE = 1024 * 1024

TALOS_ADV_LENGTH = 256 * 1024
TALOS_ADV_DATA_LENGTH = TALOS_ADV_LENGTH - 40
TALOS_MAGIC1 = 0x5A4B3C2D
TALOS_MAGIC2 = 0xA5B4C3D2

SYSLINUX_ADV_SIZE = 512
SYSLINUX_MAGIC1 = 0x5A2D2FA5
SYSLINUX_MAGIC2 = 0xA3041767
SYSLINUX_MAGIC3 = 0xDD28BF64

# Tag 0 is the ADV end marker: a value stored under it would hide itself and what follows.
END_TAG = 0

# Go's gzip.NewWriterLevel(BestCompression) header: no name, mtime 0, XFL 2 (best), OS 255.
_GO_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"


_KEY = re.compile(
    r"0[xX]([0-9a-fA-F]+)|0[oO]([0-7]+)|0[bB]([01]+)|0([0-7]*)|([1-9][0-9]*)", re.ASCII
)


class MetaFormatError(InvalidInput):
    """Bytes or text that are not a valid META encoding."""


def encode_text(values: Iterable[MetaValue]) -> str:
    """Upstream Values.Encode before base64: `0x%x=%s` joined with `;`."""
    parts = []
    for value in values:
        _check_key(value.key)
        if ";" in value.value:
            raise InvalidInput(
                f"META value for key 0x{value.key:x} contains ';', which the installer can't decode"
            )
        parts.append(f"0x{value.key:x}={value.value}")
    return ";".join(parts)


def decode_text(text: str) -> tuple[MetaValue, ...]:
    if not text:
        return ()
    result = []
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            raise MetaFormatError(f"invalid META value {part!r}: expected KEY=VALUE")
        result.append(MetaValue(_parse_key(key), value))
    return tuple(result)


def go_gzip(data: bytes) -> bytes:
    """Gzip with Go's header bytes; the deflate stream is zlib's, so it decodes identically."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(data) + compressor.flush()
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return _GO_GZIP_HEADER + body + trailer


def encode_env(values: Iterable[MetaValue], *, allow_gzip: bool) -> str:
    """The value of INSTALLER_META_BASE64; gzipped when longer than 256 bytes and allowed (>= 1.6.3)."""
    raw = encode_text(values).encode()
    if allow_gzip and len(raw) > GZIP_THRESHOLD:
        raw = go_gzip(raw)
    return base64.b64encode(raw).decode("ascii")


def decode_env(encoded: str) -> tuple[MetaValue, ...]:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise MetaFormatError(f"invalid META base64 {encoded!r}: {exc}") from exc
    if len(raw) >= 10 and raw[:2] == b"\x1f\x8b":
        try:
            raw = zlib.decompress(raw, 16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise MetaFormatError(f"invalid gzipped META: {exc}") from exc
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise MetaFormatError(f"META text is not UTF-8: {exc}") from exc
    return decode_text(text)


def kernel_arg(values: Iterable[MetaValue], *, allow_gzip: bool) -> str:
    return f"talos.environment={ENV_VAR}={encode_env(values, allow_gzip=allow_gzip)}"


def merge(values: Iterable[MetaValue]) -> dict[int, bytes]:
    """Apply values in order like repeated SetTag: a later value for a key replaces the earlier."""
    tags: dict[int, bytes] = {}
    for value in values:
        _check_key(value.key)
        if value.key == END_TAG:
            raise InvalidInput("META key 0 can't be stored in the META partition (0 ends the ADV)")
        tags.pop(value.key, None)
        tags[value.key] = value.value.encode()
    return tags


def talos_adv_block(tags: Mapping[int, bytes]) -> bytes:
    """One 256 KiB copy: BE magic1, {tag u32, len u32, value}…, sha256 at -36, BE magic2 at -4."""
    used = sum(8 + len(value) for value in tags.values())
    if used > TALOS_ADV_DATA_LENGTH:
        raise InvalidInput(
            f"META values take {used} bytes, more than the {TALOS_ADV_DATA_LENGTH} the ADV holds"
        )
    block = bytearray(TALOS_ADV_LENGTH)
    struct.pack_into(">I", block, 0, TALOS_MAGIC1)
    struct.pack_into(">I", block, TALOS_ADV_LENGTH - 4, TALOS_MAGIC2)
    offset = 4
    # Upstream walks a Go map (random order); ascending tags make the image reproducible.
    for tag in sorted(tags):
        value = tags[tag]
        struct.pack_into(">II", block, offset, tag, len(value))
        block[offset + 8 : offset + 8 + len(value)] = value
        offset += 8 + len(value)
    block[TALOS_ADV_LENGTH - 36 : TALOS_ADV_LENGTH - 4] = hashlib.sha256(block).digest()
    return bytes(block)


def decode_talos_adv_block(block: bytes) -> dict[int, bytes]:
    if len(block) != TALOS_ADV_LENGTH:
        raise MetaFormatError(f"Talos ADV block is {len(block)} bytes, expected {TALOS_ADV_LENGTH}")
    (magic1,) = struct.unpack_from(">I", block, 0)
    (magic2,) = struct.unpack_from(">I", block, TALOS_ADV_LENGTH - 4)
    if magic1 != TALOS_MAGIC1 or magic2 != TALOS_MAGIC2:
        raise MetaFormatError(f"Talos ADV magic {magic1:#x}/{magic2:#x} is wrong")
    checksum = block[TALOS_ADV_LENGTH - 36 : TALOS_ADV_LENGTH - 4]
    zeroed = block[: TALOS_ADV_LENGTH - 36] + bytes(32) + block[TALOS_ADV_LENGTH - 4 :]
    if hashlib.sha256(zeroed).digest() != checksum:
        raise MetaFormatError("Talos ADV checksum mismatch")
    tags: dict[int, bytes] = {}
    data = block[4 : TALOS_ADV_LENGTH - 36]
    offset = 0
    while len(data) - offset >= 8:
        tag, size = struct.unpack_from(">II", data, offset)
        if tag == END_TAG:
            break
        if len(data) - offset < size + 8:
            raise MetaFormatError(f"Talos ADV value for tag {tag} runs past the block ({size} B)")
        tags[tag] = data[offset + 8 : offset + 8 + size]
        offset += 8 + size
    return tags


def talos_adv(tags: Mapping[int, bytes]) -> bytes:
    block = talos_adv_block(tags)
    return block + block


def decode_talos_adv(data: bytes) -> dict[int, bytes]:
    """Read the first valid copy, like upstream: the second is the fallback."""
    try:
        return decode_talos_adv_block(data[:TALOS_ADV_LENGTH])
    except MetaFormatError:
        return decode_talos_adv_block(data[TALOS_ADV_LENGTH : 2 * TALOS_ADV_LENGTH])


def syslinux_adv(tags: Mapping[int, bytes]) -> bytes:
    """Legacy syslinux ADV, 2 x 512 B: LE magic, checksum, {tag u8, len u8, value}…, LE tail."""
    block = bytearray(SYSLINUX_ADV_SIZE)
    offset = 8
    for tag, value in tags.items():
        _check_key(tag)
        if tag == END_TAG or len(value) > 255:
            raise InvalidInput(f"META key {tag} ({len(value)} B) doesn't fit the syslinux ADV")
        if offset + 2 + len(value) > SYSLINUX_ADV_SIZE - 4 - 2:
            raise InvalidInput("META values overflow the 500-byte syslinux ADV")
        block[offset] = tag
        block[offset + 1] = len(value)
        block[offset + 2 : offset + 2 + len(value)] = value
        offset += 2 + len(value)
    struct.pack_into("<I", block, 0, SYSLINUX_MAGIC1)
    struct.pack_into("<I", block, 4, _syslinux_checksum(block))
    struct.pack_into("<I", block, SYSLINUX_ADV_SIZE - 4, SYSLINUX_MAGIC3)
    return bytes(block) * 2


def decode_syslinux_adv(data: bytes) -> dict[int, bytes]:
    """Empty for an all-zero area (what upstream leaves there); otherwise check and walk a copy."""
    if len(data) != 2 * SYSLINUX_ADV_SIZE:
        raise MetaFormatError(
            f"syslinux ADV is {len(data)} bytes, expected {2 * SYSLINUX_ADV_SIZE}"
        )
    if not any(data):
        return {}
    for start in (0, SYSLINUX_ADV_SIZE):
        block = data[start : start + SYSLINUX_ADV_SIZE]
        head, checksum = struct.unpack_from("<II", block, 0)
        (tail,) = struct.unpack_from("<I", block, SYSLINUX_ADV_SIZE - 4)
        if (head, tail) == (SYSLINUX_MAGIC1, SYSLINUX_MAGIC3) and checksum == _syslinux_checksum(
            block
        ):
            return _walk_syslinux(block)
    raise MetaFormatError("syslinux ADV has neither a valid first nor second copy")


def partition_image(values: Iterable[MetaValue], size: int = PARTITION_SIZE) -> bytes:
    """The META partition as the imager writes it: all zeros when there are no values."""
    tags = merge(values)
    image = bytearray(size)
    if not tags:
        return bytes(image)
    adv = talos_adv(tags)
    if len(adv) + 2 * SYSLINUX_ADV_SIZE > size:
        raise InvalidInput(f"META partition of {size} bytes is too small for the ADV")
    image[: len(adv)] = adv
    # The legacy syslinux area (last 1024 bytes) stays zero: upstream never sets tags there.
    return bytes(image)


def decode_partition(image: bytes) -> dict[int, str]:
    """Values from a META partition: Talos ADV first, legacy syslinux ADV for missing keys."""
    if not any(image):
        return {}
    tags = {key: value.decode() for key, value in decode_talos_adv(image).items()}
    legacy = decode_syslinux_adv(image[-2 * SYSLINUX_ADV_SIZE :])
    for key, value in legacy.items():
        tags.setdefault(key, value.decode())
    return tags


def _walk_syslinux(block: bytes) -> dict[int, bytes]:
    tags: dict[int, bytes] = {}
    offset = 8
    while offset < SYSLINUX_ADV_SIZE - 4 - 2:
        tag, size = block[offset], block[offset + 1]
        if tag == END_TAG:
            break
        if offset + 2 + size > SYSLINUX_ADV_SIZE - 4:
            raise MetaFormatError(f"syslinux ADV value for tag {tag} runs past the block")
        tags.setdefault(tag, block[offset + 2 : offset + 2 + size])
        offset += 2 + size
    return tags


def _syslinux_checksum(block: bytes | bytearray) -> int:
    words: tuple[int, ...] = struct.unpack_from(f"<{(SYSLINUX_ADV_SIZE - 12) // 4}I", block, 8)
    return (SYSLINUX_MAGIC2 - sum(words)) & 0xFFFFFFFF


def _check_key(key: int) -> None:
    if not 0 <= key <= 255:
        raise InvalidInput(f"META key {key} is outside 0..255")


def _parse_key(text: str) -> int:
    """Go strconv.ParseUint(k, 0, 8): 0x hex, 0o or leading-0 octal, 0b binary, else decimal."""
    match = _KEY.fullmatch(text)
    if match is None:
        raise MetaFormatError(f"invalid META key {text!r}")
    hex_digits, oct_digits, bin_digits, legacy_octal, decimal = match.groups()
    if hex_digits is not None:
        key = int(hex_digits, 16)
    elif oct_digits is not None:
        key = int(oct_digits, 8)
    elif bin_digits is not None:
        key = int(bin_digits, 2)
    elif legacy_octal is not None:
        key = int(legacy_octal or "0", 8)
    else:
        key = int(decimal, 10)
    if key > 255:
        raise MetaFormatError(f"invalid META key {text!r}: outside 0..255")
    return key
