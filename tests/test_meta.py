"""META encodings: text, base64(+gzip) kernel argument, Talos and syslinux ADVs, the partition."""

from __future__ import annotations

import base64
import gzip
import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory import meta
from imagefactory.errors import InvalidInput
from imagefactory.schematic import MetaValue

# image-factory integration test: key 0xa, value {"externalIPs":["1.2.3.4"]}.
UPSTREAM_VALUE = MetaValue(0xA, '{"externalIPs":["1.2.3.4"]}')
UPSTREAM_ENV = "MHhhPXsiZXh0ZXJuYWxJUHMiOlsiMS4yLjMuNCJdfQ=="


def test_text_form() -> None:
    values = (MetaValue(0xA, "foo"), MetaValue(6, "bar=baz"), MetaValue(255, ""))
    assert meta.encode_text(values) == "0xa=foo;0x6=bar=baz;0xff="
    assert meta.decode_text("0xa=foo;0x6=bar=baz;0xff=") == values


def test_upstream_vector() -> None:
    assert meta.encode_env([UPSTREAM_VALUE], allow_gzip=True) == UPSTREAM_ENV
    assert meta.kernel_arg([UPSTREAM_VALUE], allow_gzip=True) == (
        f"talos.environment=INSTALLER_META_BASE64={UPSTREAM_ENV}"
    )
    assert meta.decode_env(UPSTREAM_ENV) == (UPSTREAM_VALUE,)


def test_gzip_only_above_256_bytes_and_when_allowed() -> None:
    exact = [MetaValue(0xA, "x" * (256 - len("0xa=")))]
    assert len(meta.encode_text(exact)) == 256
    assert base64.b64decode(meta.encode_env(exact, allow_gzip=True)).startswith(b"0xa=")
    longer = [MetaValue(0xA, "x" * 253)]
    gzipped = base64.b64decode(meta.encode_env(longer, allow_gzip=True))
    # Go's gzip.NewWriterLevel(BestCompression): no name, mtime 0, XFL 2, OS 255 (unknown).
    assert gzipped[:10] == bytes.fromhex("1f8b 0800 00000000 02 ff")
    assert gzip.decompress(gzipped) == b"0xa=" + b"x" * 253
    plain = base64.b64decode(meta.encode_env(longer, allow_gzip=False))
    assert plain == b"0xa=" + b"x" * 253


def test_go_gzip_is_deterministic_and_standard() -> None:
    data = b"0x6=" + bytes(range(256)) * 4
    assert meta.go_gzip(data) == meta.go_gzip(data)
    assert gzip.decompress(meta.go_gzip(data)) == data
    trailer = meta.go_gzip(data)[-8:]
    assert struct.unpack("<I", trailer[4:])[0] == len(data)


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("", ()),
        ("10=a", (MetaValue(10, "a"),)),
        ("0XA=a", (MetaValue(10, "a"),)),
        ("012=a", (MetaValue(10, "a"),)),
        ("0o12=a", (MetaValue(10, "a"),)),
        ("0b1010=a", (MetaValue(10, "a"),)),
        ("0=", (MetaValue(0, ""),)),
    ],
)
def test_decode_text_keys_like_go_parseuint(text: str, values: tuple[MetaValue, ...]) -> None:
    assert meta.decode_text(text) == values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0xa", "invalid META value '0xa': expected KEY=VALUE"),
        ("0xa=1;", "invalid META value '': expected KEY=VALUE"),
        ("0x100=a", "invalid META key '0x100': outside 0..255"),
        ("256=a", "invalid META key '256': outside 0..255"),
        ("-1=a", "invalid META key '-1'"),
        ("08=a", "invalid META key '08'"),
        (" 1=a", "invalid META key ' 1'"),
        ("x=a", "invalid META key 'x'"),
    ],
)
def test_decode_text_rejects(text: str, message: str) -> None:
    with pytest.raises(meta.MetaFormatError) as info:
        meta.decode_text(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("encoded", "fragment"),
    [
        ("not base64!", "invalid META base64"),
        (base64.b64encode(b"\x1f\x8b" + bytes(20)).decode(), "invalid gzipped META"),
        (base64.b64encode(b"0xa=\xff").decode(), "not UTF-8"),
    ],
)
def test_decode_env_rejects(encoded: str, fragment: str) -> None:
    with pytest.raises(meta.MetaFormatError, match=fragment):
        meta.decode_env(encoded)


def test_encode_rejects_what_the_installer_cannot_read() -> None:
    with pytest.raises(InvalidInput, match="contains ';'"):
        meta.encode_text([MetaValue(0xA, "a;b")])
    with pytest.raises(InvalidInput, match=r"outside 0\.\.255"):
        meta.encode_text([MetaValue(256, "a")])


def test_partition_layout() -> None:
    image = meta.partition_image([MetaValue(0xA, "foo"), MetaValue(6, "up")])
    assert len(image) == 1024 * 1024
    first, second = image[:262144], image[262144:524288]
    assert first == second
    assert first[:4] == bytes.fromhex("5a4b3c2d")
    assert first[-4:] == bytes.fromhex("a5b4c3d2")
    # Records in ascending tag order, big-endian tag and length.
    assert first[4 : 4 + 8 + 2] == struct.pack(">II", 6, 2) + b"up"
    assert first[14 : 14 + 8 + 3] == struct.pack(">II", 0xA, 3) + b"foo"
    zeroed = first[:-36] + bytes(32) + first[-4:]
    assert first[-36:-4] == hashlib.sha256(zeroed).digest()
    assert not any(image[524288:])
    assert meta.decode_partition(image) == {0xA: "foo", 6: "up"}


def test_empty_partition_is_all_zeros() -> None:
    assert meta.partition_image([]) == bytes(1024 * 1024)
    assert meta.decode_partition(bytes(1024 * 1024)) == {}


def test_later_values_replace_earlier_ones() -> None:
    image = meta.partition_image([MetaValue(6, "a"), MetaValue(7, "b"), MetaValue(6, "c")])
    assert meta.decode_partition(image) == {6: "c", 7: "b"}


def test_corrupt_first_copy_falls_back_to_second() -> None:
    image = bytearray(meta.partition_image([MetaValue(0xA, "foo")]))
    image[100] ^= 0xFF
    assert meta.decode_partition(bytes(image)) == {0xA: "foo"}
    image[262144 + 100] ^= 0xFF
    with pytest.raises(meta.MetaFormatError, match="checksum mismatch"):
        meta.decode_partition(bytes(image))


def test_partition_rejects() -> None:
    with pytest.raises(InvalidInput, match="key 0"):
        meta.partition_image([MetaValue(0, "x")])
    with pytest.raises(InvalidInput, match="more than the 262104"):
        meta.partition_image([MetaValue(6, "x" * 262104)])
    with pytest.raises(InvalidInput, match="too small"):
        meta.partition_image([MetaValue(6, "x")], size=512 * 1024)
    with pytest.raises(meta.MetaFormatError, match="bytes, expected"):
        meta.decode_talos_adv_block(bytes(10))
    with pytest.raises(meta.MetaFormatError, match="magic"):
        meta.decode_talos_adv_block(bytes(262144))


def test_largest_value_that_fits() -> None:
    values = [MetaValue(6, "x" * (262104 - 8))]
    assert meta.decode_partition(meta.partition_image(values)) == {6: "x" * (262104 - 8)}


def test_syslinux_adv_layout() -> None:
    adv = meta.syslinux_adv({0xA: b"foo"})
    assert len(adv) == 1024
    assert adv[:512] == adv[512:]
    head, checksum = struct.unpack_from("<II", adv, 0)
    assert head == 0x5A2D2FA5
    assert struct.unpack_from("<I", adv, 508)[0] == 0xDD28BF64
    words = struct.unpack_from("<125I", adv, 8)
    assert (checksum + sum(words)) & 0xFFFFFFFF == 0xA3041767
    assert adv[8:13] == b"\x0a\x03foo"
    assert meta.decode_syslinux_adv(adv) == {0xA: b"foo"}


def test_syslinux_adv_rejects() -> None:
    with pytest.raises(InvalidInput, match="doesn't fit"):
        meta.syslinux_adv({6: b"x" * 256})
    with pytest.raises(InvalidInput, match="overflow"):
        meta.syslinux_adv({6: b"x" * 250, 7: b"y" * 250})
    broken = bytearray(meta.syslinux_adv({6: b"x"}))
    broken[20] ^= 1
    assert meta.decode_syslinux_adv(bytes(broken)) == {6: b"x"}
    broken[532] ^= 1
    with pytest.raises(meta.MetaFormatError, match="neither"):
        meta.decode_syslinux_adv(bytes(broken))


def test_legacy_values_fill_in_missing_keys() -> None:
    image = bytearray(meta.partition_image([MetaValue(6, "new")]))
    image[-1024:] = meta.syslinux_adv({6: b"old", 7: b"legacy"})
    assert meta.decode_partition(bytes(image)) == {6: "new", 7: "legacy"}


values_text = st.text(st.characters(exclude_characters=";", codec="utf-8"))
meta_values = st.lists(st.builds(MetaValue, st.integers(0, 255), values_text), max_size=8)
partition_values = st.lists(st.builds(MetaValue, st.integers(1, 255), values_text), max_size=8)


@given(meta_values)
def test_text_round_trip(values: list[MetaValue]) -> None:
    encoded = meta.encode_text(values)
    assert meta.decode_text(encoded) == (tuple(values) if encoded else ())


@given(meta_values.filter(bool), st.booleans())
def test_env_round_trip(values: list[MetaValue], allow_gzip: bool) -> None:
    encoded = meta.encode_env(values, allow_gzip=allow_gzip)
    assert meta.decode_env(encoded) == tuple(values)
    raw = base64.b64decode(encoded)
    text_bytes = meta.encode_text(values).encode()
    assert raw.startswith(b"\x1f\x8b") == (allow_gzip and len(text_bytes) > 256)


@given(partition_values)
def test_partition_round_trip(values: list[MetaValue]) -> None:
    expected = {value.key: value.value for value in values}
    assert meta.decode_partition(meta.partition_image(values)) == expected


@given(st.dictionaries(st.integers(1, 255), st.binary(max_size=40), max_size=8))
def test_syslinux_round_trip(tags: dict[int, bytes]) -> None:
    assert meta.decode_syslinux_adv(meta.syslinux_adv(tags)) == tags


@given(st.dictionaries(st.integers(1, 255), st.binary(max_size=300), max_size=8))
def test_talos_adv_round_trip(tags: dict[int, bytes]) -> None:
    adv = meta.talos_adv(tags)
    assert len(adv) == 2 * 262144
    assert meta.decode_talos_adv(adv) == tags
