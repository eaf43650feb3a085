"""Emitter and resolver details the mutation run showed unguarded: natural key order across digit
runs of different lengths, !!binary line wrapping, literal style for short strings, Go quoting of
spaces, leap years, float overflow and the int64 edge of !!float."""

from __future__ import annotations

import base64

import pytest

from imagefactory import goresolve as gr
from imagefactory import goyaml
from imagefactory.errors import InvalidInput
from imagefactory.gotext import go_quote
from imagefactory.goyaml import sorted_keys
from imagefactory.schematic import parse_schematic


@pytest.mark.parametrize(
    ("keys", "order"),
    [
        (["a1000", "a12"], ["a12", "a1000"]),  # digit runs as numbers, whatever their length
        (["a12", "a1000"], ["a12", "a1000"]),
        (["1000", "12"], ["12", "1000"]),  # the run starts the key
        (["a99", "a101", "a100", "a98"], ["a98", "a99", "a100", "a101"]),
        (["v1.10.0", "v1.9.6", "v1.2.0"], ["v1.2.0", "v1.9.6", "v1.10.0"]),
    ],
)
def test_natural_order_of_digit_runs(keys: list[str], order: list[str]) -> None:
    assert sorted_keys(keys) == order


@pytest.mark.parametrize("size", [0, 1, 51, 52, 53, 100, 300])
def test_binary_is_wrapped_at_70_columns_only_when_longer(size: int) -> None:
    raw = bytes(range(256))[:size] if size <= 256 else bytes(size)
    text = base64.b64encode(raw).decode()
    encoded = goyaml._encode_base64(raw)
    if len(text) < 70:
        assert encoded == text
    else:
        lines = [text[i : i + 70] for i in range(0, len(text), 70)]
        assert encoded == "\n".join(lines) + "\n"


def test_short_multiline_strings_are_literal_blocks() -> None:
    literal = goyaml.represent_string("ab\ncd")[2]
    assert goyaml.represent_string("a\n")[2] == literal
    assert goyaml.represent_string("\n")[2] != literal  # nothing but a break: double-quoted


def test_go_quote_keeps_spaces_and_escapes_controls() -> None:
    assert go_quote("a b") == '"a b"'
    assert go_quote("\x1f\x7f") == '"\\x1f\\x7f"'
    assert go_quote("\u00ad\U000e0001") == '"\\u00ad\\U000e0001"'


@pytest.mark.parametrize(
    ("text", "valid"),
    [("2000-02-29", True), ("2024-02-29", True), ("1900-02-29", False), ("2023-02-29", False)],
)
def test_leap_days(text: str, valid: bool) -> None:
    assert (gr.parse_timestamp(text) is not None) is valid


def test_float_overflow_stays_a_string() -> None:
    assert gr.resolved_tag("1e999") == gr.STR
    assert gr.resolved_tag("1e308") == gr.FLOAT


def test_float_tag_converts_ints_up_to_int64_max() -> None:
    assert gr.resolve(gr.FLOAT, str(gr.INT64_MAX)) == (gr.FLOAT, float(gr.INT64_MAX))
    with pytest.raises(gr.ResolveError):
        gr.resolve(gr.FLOAT, str(gr.INT64_MAX + 1))


def test_full_emitter_and_fast_writer_agree_on_falses_and_empty_collections() -> None:
    value = {
        "a": False,
        "b": True,
        "c": {},
        "d": [],
        "e": 18446744073709551615,
        "f": -0.0,
        "g": {"x": [False, {"y": []}]},
    }
    expected = (
        b"a: false\nb: true\nc: {}\nd: []\ne: 18446744073709551615\nf: -0\n"
        b"g:\n    x:\n        - false\n        - 'y': []\n"
    )
    assert goyaml.marshal(value, fast=False) == goyaml.marshal(value) == expected


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2001-12-14T23:59:59Z", True),
        ("2001-12-14T24:00:00Z", False),  # hour out of range
        ("2001-12-14T23:59:60Z", False),  # no leap second in time.Parse
        ("2001-12-14T10:00:00+24:00", True),  # zone hour up to 24, minute up to 60
        ("2001-12-14T10:00:00+25:00", False),
        ("2001-12-14T10:00:00+10:60", True),
        ("2001-12-14T10:00:00+10:61", False),
    ],
)
def test_timestamp_ranges(text: str, valid: bool) -> None:
    assert (gr.parse_timestamp(text) is not None) is valid


def test_strings_that_read_back_as_other_types_are_quoted_by_both_writers() -> None:
    value = {"a": "hello", "b": "1:20", "c": "+1:20", "d": "<<", "e": "\udcff"}
    expected = b"a: hello\nb: '1:20'\nc: '+1:20'\nd: '<<'\ne: !!binary /w==\n"
    assert goyaml.marshal(value, fast=False) == goyaml.marshal(value) == expected


@pytest.mark.parametrize(
    ("plain", "tag"),
    [
        ("18446744073709551615", "!!int"),  # uint64's maximum: ParseUint takes it
        ("18446744073709551616", "!!float"),  # one more, same digit count: out of range, a float
        ("0xFFFFFFFFFFFFFFFF", "!!int"),
        ("0x1FFFFFFFFFFFFFFFF", "!!str"),  # too long for uint64 and not a float either
    ],
)
def test_uint64_range_decides_the_tag(plain: str, tag: str) -> None:
    document = f"customization:\n  meta:\n    - key: {plain}\n      value: x\n"
    with pytest.raises(InvalidInput, match=f"cannot construct {tag} "):
        parse_schematic(document.encode())


def test_go_quote_short_escapes() -> None:
    assert go_quote('"\\\a\b\f\n\r\t\v') == '"\\"\\\\\\a\\b\\f\\n\\r\\t\\v"'


@pytest.mark.parametrize(
    ("text", "tag", "value"),
    [
        ("-9223372036854775808", gr.INT, gr.INT64_MIN),  # int64's minimum is an int
        ("-5", gr.INT, -5),
        ("+.inf", gr.FLOAT, float("inf")),  # exact spellings after a sign
        ("-.Inf", gr.FLOAT, float("-inf")),
        ("2000-02-29", gr.TIMESTAMP, gr.GoTime("2000-02-29T00:00:00Z")),
        ("2000-02-30", gr.STR, "2000-02-30"),  # a leap February has 29 days, not 30
        ("2001-13-01", gr.STR, "2001-13-01"),
        ("2001-12-14 10:60:00", gr.STR, "2001-12-14 10:60:00"),
        ("2001-12-14 10:59:59", gr.TIMESTAMP, gr.GoTime("2001-12-14T10:59:59Z")),
        ("2001-12-14T21:59:43+00:00", gr.TIMESTAMP, gr.GoTime("2001-12-14T21:59:43Z")),
        ("2001-12-14T21:59:43+01:00", gr.TIMESTAMP, gr.GoTime("2001-12-14T21:59:43+01:00")),
    ],
)
def test_resolver_edges(text: str, tag: str, value: object) -> None:
    assert gr.resolve("", text) == (tag, value)


def test_an_empty_str_tagged_scalar_stays_a_string() -> None:
    assert gr.resolve(gr.STR, "") == (gr.STR, "")
    assert gr.resolve("", "") == (gr.NULL, None)
