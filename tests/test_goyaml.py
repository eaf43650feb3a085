"""Go yaml.Marshal emulation: quoting, literal blocks, floats, key order, and round-trip properties.

Expected forms are derived from go.yaml.in/yaml/v4 (v3 defaults): representer stringv, desolver,
emitter analyzeScalar/selectScalarStyle, and testdata/encode.yaml where it has a case.
"""

from __future__ import annotations

import json
import math
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from imagefactory import goresolve as gr
from imagefactory.goyaml import GoStruct, marshal, sorted_keys
from imagefactory.schematic import (
    Bootloader,
    Customization,
    DiskImage,
    MetaValue,
    Overlay,
    Schematic,
    SecureBoot,
    canonical,
    parse_schematic,
    to_go,
)
from imagefactory.yamlload import AnyKeyMap

STRINGS = [
    # Plain when the text resolves to !!str and no indicator forbids it.
    ("hi", "hi"),
    ("a:b", "a:b"),  # ':' is an indicator only before a blank
    ("a#b", "a#b"),  # '#' starts a comment only after a blank
    ("-a", "-a"),
    ("?a", "?a"),
    ("a]", "a]"),  # flow indicators only matter in flow context
    ("é", "é"),  # printable non-ASCII is written raw (unicode on)
    ("你好", "你好"),  # encode.yaml "unicode" case
    ("a\xa0b", "a\xa0b"),  # U+00A0 is printable
    ("=", "="),  # v4 resolves "=" as a plain string
    ("1e500", "1e500"),  # ParseFloat overflows: not a float, stays a string
    # Desolver: text that would resolve to another type is double-quoted (QuoteLegacy).
    ("", '""'),
    ("true", '"true"'),
    ("True", '"True"'),
    ("null", '"null"'),
    ("~", '"~"'),
    ("123", '"123"'),
    ("0x1F", '"0x1F"'),
    ("0o17", '"0o17"'),
    ("017", '"017"'),
    ("08", '"08"'),  # invalid octal, but the float regexp matches
    ("1e3", '"1e3"'),
    ("1_000", '"1_000"'),  # underscores are dropped before ParseInt
    ("+1", '"+1"'),
    ("-0b101", '"-0b101"'),
    (".inf", '".inf"'),
    ("+.inf", '"+.inf"'),
    (".5", '".5"'),
    ("18446744073709551616", '"18446744073709551616"'),  # beyond uint64: a float
    ("2001-12-14", '"2001-12-14"'),  # timestamp
    ("2015-02-24T18:19:39Z", '"2015-02-24T18:19:39Z"'),  # encode.yaml timestamp-like string
    # Representer needsQuoting: YAML 1.1 bools, base 60 numbers and "<<" are single-quoted
    # in v4 (v3 wrote them double-quoted).
    ("yes", "'yes'"),
    ("Off", "'Off'"),
    ("y", "'y'"),
    ("1:20", "'1:20'"),
    ("12:30:45", "'12:30:45'"),
    ("<<", "'<<'"),
    # Emitter: plain not allowed in block context -> single quotes.
    ("-", "'-'"),
    ("- a", "'- a'"),
    ("a: b", "'a: b'"),
    ("a #b", "'a #b'"),
    ("Hello #comment", "'Hello #comment'"),
    ("#a", "'#a'"),
    ("*a", "'*a'"),
    ("&a", "'&a'"),
    ("!a", "'!a'"),
    ("%a", "'%a'"),
    ("@a", "'@a'"),
    ("`a", "'`a'"),
    ("|a", "'|a'"),
    (">a", "'>a'"),
    ("? a", "'? a'"),
    (": a", "': a'"),
    ("[a", "'[a'"),
    ("{a", "'{a'"),
    ("'a", "'''a'"),
    ('"a', "'\"a'"),
    (" a", "' a'"),
    ("a ", "'a '"),
    ("---", "'---'"),
    ("...", "'...'"),
    ("it's", "it's"),
    # Single quotes not allowed (tab, special characters) -> double quotes with escapes.
    ("a\tb", '"a\\tb"'),
    ("\x00", '"\\0"'),  # encode.yaml binary data case
    ("\x7f", '"\\x7F"'),
    ("\x85", '"\\N"'),
    ("\r", '"\\r"'),
    ("a\rb", '"a\\rb"'),
    ("\U0001f600", '"\\U0001F600"'),  # is_printable rejects 4-byte UTF-8
    ("\ufeffab", '"\\uFEFF\\x61\\x62"'),  # is_bom looks at the value start: all escaped
    ("a\\b", "a\\b"),
    # Line breaks -> literal block, chomping from the trailing breaks, indent hint for a space.
    ("a\nb", "|-\n    a\n    b"),
    ("a\n", "|\n    a"),
    ("a\n\n", "|+\n    a\n"),
    (" a\nb", "|4-\n     a\n    b"),
    ("\tB\n\tC\n", "|\n    \tB\n    \tC"),  # encode.yaml: tabs are fine in literals
    ("\nab", "|-\n\n    ab"),  # v4 keeps the leading newline (go-yaml issue 755)
    # A break a literal cannot hold -> double quotes.
    ("\n", '"\\n"'),  # shouldUseLiteralStyle needs 2+ characters
    ("\n\n", '"\\n\\n"'),
    (" \n", '" \\n"'),
    ("a \nb", '"a \\nb"'),  # space before a break
    ("a\n\x01", '"a\\n\\x01"'),
    # No folding: v3/v4 Marshal has unlimited line width.
    ("word " * 30 + "end", "word " * 30 + "end"),
]


@pytest.mark.parametrize(("value", "expected"), STRINGS)
def test_string_as_map_value(value: str, expected: str) -> None:
    assert marshal({"v": value}).decode() == f"v: {expected}\n"


def test_invalid_utf8_becomes_binary() -> None:
    # encode.yaml binary cases: "\x80\x81\x82" and 54 x "\x90" (two base64 lines, literal).
    short = b"\x80\x81\x82".decode("utf-8", "surrogateescape")
    assert marshal({"a": short}) == b"a: !!binary gIGC\n"
    long = (b"\x90" * 54).decode("utf-8", "surrogateescape")
    assert marshal({"a": long}) == b"a: !!binary |\n    " + b"kJCQ" * 17 + b"kJ\n    CQ\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x" * 128, "x" * 128 + ": v\n"),
        ("x" * 129, "? " + "x" * 129 + "\n: v\n"),  # simple keys are at most 128 bytes
        ("é" * 65, "? " + "é" * 65 + "\n: v\n"),  # ...counted in UTF-8 bytes
        ("a\nb", "? |-\n    a\n    b\n: v\n"),  # multi-line keys are complex keys
        ("", '"": v\n'),
        ("yes", "'yes': v\n"),
        ("1", '"1": v\n'),
    ],
)
def test_map_keys(value: str, expected: str) -> None:
    assert marshal({value: "v"}).decode() == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (-0.1, "-0.1"),
        (1.0, "1"),
        (0.0, "0"),
        (-0.0, "-0"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e21, "1e+21"),
        (123456.5, "123456.5"),
        (2.5e300, "2.5e+300"),
        (math.inf, ".inf"),
        (-math.inf, "-.inf"),
        (math.nan, ".nan"),
    ],
)
def test_float_formatting(value: float, text: str) -> None:
    # strconv.FormatFloat(f, 'g', -1, 64): %e when the exponent is < -4 or >= 6.
    assert gr.format_float(value) == text
    assert marshal({"v": value}).decode() == f"v: {text}\n"


def test_scalars_of_other_types() -> None:
    value = {"b": True, "i": -10, "u": 18446744073709551615, "n": None, "t": gr.GoTime("x")}
    # The key "n" is a YAML 1.1 bool, so even as a key it is single-quoted.
    assert marshal(value) == b"b: true\ni: -10\n'n': null\nt: x\nu: 18446744073709551615\n"


@pytest.mark.parametrize(
    ("keys", "order"),
    [
        (["b", "a", "c"], ["a", "b", "c"]),
        (["a10", "a9", "a1"], ["a1", "a9", "a10"]),  # digit runs compare as numbers
        (["a01", "a1", "a001"], ["a1", "a01", "a001"]),
        (["1a", "a1", "A"], ["1a", "A", "a1"]),
        (["ab", "a1"], ["a1", "ab"]),  # a letter sorts after a digit following a non-digit
        (["a1b", "a1a", "a11"], ["a1a", "a1b", "a11"]),  # after a digit, letters come first
        # Neither a letter: compared as digit runs, "_" counting as 0 and "1" as 1.
        (["B", "a", "_", "1"], ["_", "1", "B", "a"]),
        (["x", "xx", ""], ["", "x", "xx"]),
        (["é", "z"], ["z", "é"]),
    ],
)
def test_string_key_order(keys: list[str], order: list[str]) -> None:
    assert sorted_keys(keys) == order


def test_mixed_key_order() -> None:
    # Numbers (bools as 0/1) by value then Go kind, then nil, strings, times (reflect.Kind order).
    keys = ["s", None, 2, 1.5, True, False, 1, gr.GoTime("t"), 18446744073709551615]
    assert sorted_keys(keys) == [
        False,
        True,
        1,
        1.5,
        2,
        18446744073709551615,
        None,
        "s",
        gr.GoTime("t"),
    ]
    text = marshal(AnyKeyMap(((2, "b"), ("x", "c"), (True, "a"))))
    assert text == b"true: a\n2: b\nx: c\n"


def test_struct_nesting_and_empty_collections() -> None:
    value = GoStruct(
        (
            ("a", GoStruct(())),
            ("b", ()),
            ("c", ({"d": ()}, ("e", ("f",)), {})),
            ("g", {"h": {"i": [1]}}),
        )
    )
    assert marshal(value) == (
        b"a: {}\nb: []\nc:\n    - d: []\n    - - e\n      - - f\n    - {}\n"
        b"g:\n    h:\n        i:\n            - 1\n"
    )


@pytest.mark.parametrize(
    ("text", "tag", "value"),
    [
        ("", gr.NULL, None),
        ("~", gr.NULL, None),
        ("yes", gr.STR, "yes"),
        ("0x_1F", gr.INT, 31),
        ("-0o17", gr.INT, -15),
        ("9223372036854775808", gr.INT, 9223372036854775808),  # uint64
        ("-9223372036854775809", gr.FLOAT, -9223372036854775809.0),
        ("+.5", gr.FLOAT, 0.5),
        (".5_0", gr.FLOAT, 0.5),
        ("._5", gr.STR, "._5"),
        ("1.", gr.FLOAT, 1.0),
        ("0x", gr.STR, "0x"),
        ("2001-02-29", gr.STR, "2001-02-29"),  # day out of range
        ("2000-02-29", gr.TIMESTAMP, gr.GoTime("2000-02-29T00:00:00Z")),
        ("2001-1-2 3:4:5.123456789123", gr.TIMESTAMP, gr.GoTime("2001-01-02T03:04:05.123456789Z")),
        ("2001-12-14T21:59:43-00:00", gr.TIMESTAMP, gr.GoTime("2001-12-14T21:59:43Z")),
        ("2001-12-14T21:59:43", gr.STR, "2001-12-14T21:59:43"),  # T form needs a zone
        ("<<", gr.MERGE, "<<"),
    ],
)
def test_resolver(text: str, tag: str, value: object) -> None:
    assert gr.resolve("", text) == (tag, value)


# ---- properties ---------------------------------------------------------------------------------

# U+2028/2029/0085 are line breaks to libyaml but not to Python's YAML 1.2 reading of quoted
# scalars the emitter produces, so Go itself does not round-trip them; they stay out.
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\u2028\u2029\x85"),
    max_size=20,
)
_TRICKY = st.sampled_from(
    [
        "",
        "yes",
        "no",
        "~",
        "null",
        "1",
        "0x1F",
        "1e3",
        "a: b",
        " a",
        "a ",
        "#",
        "- x",
        "\t",
        "a\nb",
        "a\n",
        "a\n\n",
        " x\ny",
        "'",
        '"',
        "<<",
        "1:20",
        "2001-12-14",
        "é",
        "\U0001f600",
    ]
)
_STRINGS = st.one_of(_TRICKY, _TEXT)


def _round_trips_in_go(s: str) -> bool:
    """Strings whose Go output does not read back as the same string (in Go too).

    A literal block whose first text line starts with a space needs an indentation hint: v4
    writes none after a leading break, and writes "4" even where the block sits at an indent
    that is not a multiple of 4 (a mapping inside a sequence item).
    """
    return not (s.lstrip("\r\n").startswith(" ") and "\n" in s)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=gr.INT64_MIN, max_value=gr.INT64_MAX),
    st.floats(allow_nan=False),
    _STRINGS,
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(_STRINGS, children, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def schematics(draw: st.DrawFn) -> Schematic:
    strings = st.lists(_STRINGS, max_size=4).map(tuple)
    return Schematic(
        overlay=Overlay(
            image=draw(_STRINGS),
            name=draw(_STRINGS),
            options=draw(st.dictionaries(_STRINGS, _TREES, max_size=4)),
        ),
        customization=Customization(
            extra_kernel_args=draw(strings),
            official_extensions=draw(strings),
            meta=tuple(
                MetaValue(key=k, value=v)
                for k, v in draw(st.lists(st.tuples(st.integers(0, 255), _STRINGS), max_size=3))
            ),
        ),
    )


def _all_strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _all_strings(k) + _all_strings(v)]
    if isinstance(value, (tuple, list)):
        return [s for item in value for s in _all_strings(item)]
    return []


def _strings_of(s: Schematic) -> list[str]:
    c = s.customization
    return (
        [s.overlay.image, s.overlay.name]
        + _all_strings(dict(s.overlay.options))
        + list(c.extra_kernel_args + c.official_extensions)
        + [m.value for m in c.meta]
    )


@given(schematics())
def test_canonical_is_a_fixed_point(schematic: Schematic) -> None:
    assume(all(_round_trips_in_go(s) for s in _strings_of(schematic)))
    # Go writes -0.0 as "-0", which reads back as the integer 0 (in Go too).
    assume(
        not any(
            f == 0 and math.copysign(1.0, f) < 0
            for f in _all_floats(dict(schematic.overlay.options))
        )
    )
    canonical = schematic.canonical()
    again = parse_schematic(canonical, source="canonical")
    assert again.canonical() == canonical
    assert again.id == schematic.id


def _as_plain(value: object) -> object:
    if isinstance(value, tuple):
        return [_as_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_plain(v) for k, v in value.items()}
    return value


def _document(s: Schematic, reverse: bool) -> dict[str, object]:
    c = s.customization

    def order(d: dict[str, object]) -> dict[str, object]:
        items = list(d.items())
        return dict(reversed(items) if reverse else items)

    def deep(value: object) -> object:
        if isinstance(value, dict):
            return order({k: deep(v) for k, v in value.items()})
        if isinstance(value, (list, tuple)):
            return [deep(v) for v in value]
        return value

    return order(
        {
            "overlay": deep(
                {
                    "image": s.overlay.image,
                    "name": s.overlay.name,
                    "options": _as_plain(dict(s.overlay.options)),
                }
            ),
            "customization": order(
                {
                    "extraKernelArgs": list(c.extra_kernel_args),
                    "meta": [order({"key": m.key, "value": m.value}) for m in c.meta],
                    "systemExtensions": {"officialExtensions": list(c.official_extensions)},
                }
            ),
        }
    )


# The generator is shared with tests that want every string; this one drops those JSON or libyaml
# cannot carry, which some seeds do often enough to trip the filtering health check.
@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(schematics())
def test_json_spelling_and_key_order_do_not_change_the_id(schematic: Schematic) -> None:
    assume(all(_round_trips_in_go(s) for s in _strings_of(schematic)))
    # JSON cannot say inf; Go would read 1e999 as a string.
    assume(
        not any(
            isinstance(v, float) and math.isinf(v)
            for v in _all_floats(dict(schematic.overlay.options))
        )
    )
    strings = _strings_of(schematic)
    # Raw in the stream, libyaml (and Go's port of it) accepts only printable characters;
    # as \u escapes it refuses surrogates, so astral characters must stay raw.
    assume(all(_yaml_printable(ch) for text in strings for ch in text))
    astral = any(ord(ch) > 0xFFFF for text in strings for ch in text)
    forward = json.dumps(_document(schematic, reverse=False), ensure_ascii=not astral).encode()
    backward = json.dumps(_document(schematic, reverse=True), ensure_ascii=False).encode()
    assert parse_schematic(forward).id == schematic.id
    assert parse_schematic(backward).id == schematic.id


def _yaml_printable(ch: str) -> bool:
    c = ord(ch)
    return (
        ch in "\t\n\r"
        or 0x20 <= c <= 0x7E
        or 0xA0 <= c <= 0xD7FF
        or 0xE000 <= c <= 0xFFFD
        or c >= 0x10000
    ) and c != 0xFEFF


def _all_floats(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _all_floats(v)]
    if isinstance(value, (tuple, list)):
        return [f for v in value for f in _all_floats(v)]
    return []


@given(st.lists(st.text(alphabet=string.ascii_lowercase, min_size=1), min_size=2, unique=True))
def test_list_order_changes_the_id(args: list[str]) -> None:
    forward = Schematic(customization=Customization(extra_kernel_args=tuple(args)))
    backward = Schematic(customization=Customization(extra_kernel_args=tuple(reversed(args))))
    assert forward.id != backward.id


# ---- fast writers against the full emitter -----------------------------------------------------


@st.composite
def full_schematics(draw: st.DrawFn) -> Schematic:
    """Every field, with options present or not: the fast writer's whole input space."""
    base = draw(schematics())
    return Schematic(
        owner=draw(st.one_of(st.just(""), _STRINGS)),
        overlay=draw(st.sampled_from([base.overlay, Overlay(image=base.overlay.image)])),
        customization=Customization(
            embedded_machine_configuration=draw(_STRINGS),
            extra_kernel_args=base.customization.extra_kernel_args,
            meta=base.customization.meta,
            official_extensions=base.customization.official_extensions,
            bootloader=draw(st.one_of(st.none(), st.sampled_from(Bootloader))),
            secureboot=SecureBoot(
                enroll_keys=draw(st.one_of(st.just(""), _STRINGS)),
                include_well_known_certificates=draw(st.booleans()),
            ),
            disk_image=DiskImage(sector_size=draw(st.sampled_from([0, 512, 4096, gr.UINT64_MAX]))),
        ),
    )


@given(full_schematics())
def test_fast_canonical_writer_matches_the_emitter(schematic: Schematic) -> None:
    assert canonical(schematic) == canonical(schematic, fast=False)
    assert canonical(schematic, fast=False) == marshal(to_go(schematic), fast=False)


def test_fast_canonical_writer_covers_common_schematics() -> None:
    from imagefactory.schematic import _canonical_text

    common = Schematic(
        overlay=Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic"),
        customization=Customization(
            extra_kernel_args=("console=ttyS0", "yes", ""),
            meta=(MetaValue(10, '{"a": ["b"]}'),),
            official_extensions=("siderolabs/gvisor",),
            bootloader=Bootloader.SD_BOOT,
            secureboot=SecureBoot(include_well_known_certificates=True),
            disk_image=DiskImage(sector_size=4096),
        ),
    )
    text = _canonical_text(common)
    assert text is not None
    assert text.encode() == marshal(to_go(common), fast=False)
    # Block scalars and options are left to the emitter.
    assert _canonical_text(Schematic(overlay=Overlay(options={"a": 1}))) is None
    multiline = Customization(embedded_machine_configuration="a: b\nc: d\n")
    assert _canonical_text(Schematic(customization=multiline)) is None


_GO_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(_STRINGS, children, max_size=4),
        st.lists(st.tuples(_STRINGS, children), max_size=4).map(
            lambda pairs: GoStruct(tuple(pairs))
        ),
        st.dictionaries(st.one_of(st.integers(-3, 3), st.booleans()), children, max_size=3).map(
            lambda d: AnyKeyMap(tuple(d.items()))
        ),
    ),
    max_leaves=16,
)


@given(_GO_VALUES)
def test_fast_marshal_matches_the_emitter(value: object) -> None:
    assert marshal(value) == marshal(value, fast=False)


def test_fast_marshal_layout_of_nested_collections() -> None:
    from imagefactory.goyaml import _fast_document

    value = GoStruct(
        (("a", (GoStruct((("k", (3, 4)), ("v", GoStruct((("z", 1),))))), ((5, 6), 7))),)
    )
    text = _fast_document(value)
    assert text == "a:\n    - k:\n        - 3\n        - 4\n      v:\n        z: 1\n" + (
        "    - - - 5\n        - 6\n      - 7\n"
    )
    assert text.encode() == marshal(value, fast=False)
