"""The full emitter (`marshal(fast=False)`) on the paths only it writes, byte for byte, and against the
fast writer on everything the fast writer takes.

Expected bytes follow go.yaml.in/yaml/v4's emitter (v3 defaults): increaseIndent (+2 inside a
sequence item, else the next multiple of 4; flow context, i.e. a scalar, at 4 when at the root),
writeBlockScalarHints (indent hint only for a leading space, `-`/`+` chomping from the last two
characters), writeSingleQuotedScalar (U+2028/U+2029 written raw as line breaks, then indentation),
writeLiteralScalar (always a break after the header), complex keys `? key` / `:` kept on the
indicator's line for a nested collection, and representer stringv's requested styles.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory import goresolve as gr
from imagefactory import goyaml
from imagefactory.goyaml import GoStruct, marshal, represent_string, sorted_keys
from imagefactory.yamlload import AnyKeyMap

_BINARY_SHORT = b"\xff".decode("utf-8", "surrogateescape")
_BINARY_LONG = (b"\x90" * 54).decode("utf-8", "surrogateescape")
_B64_LONG = "kJCQ" * 18  # 72 characters: one line of 70 and one of 2

DOCUMENTS: list[tuple[object, str]] = [
    # Roots that are not mappings: a scalar at the root sits at indent 4 (flow), a sequence at 0.
    ("a", "a\n"),
    ("", '""\n'),
    ("yes", "'yes'\n"),
    (3, "3\n"),
    (None, "null\n"),
    ({}, "{}\n"),
    (GoStruct(()), "{}\n"),
    ((), "[]\n"),
    (("a", "b"), "- a\n- b\n"),
    ("a\nb", "|-\n    a\n    b\n"),
    ("a\n", "|\n    a\n"),  # the literal's last break ends the document: no blank line after it
    (" a\nb", "|4-\n     a\n    b\n"),
    (_BINARY_SHORT, "!!binary /w==\n"),  # no space before a tag at the start of the document
    # Literal blocks in sequences and mappings, and what follows them at the same indent.
    (("a\nb", "c\n", "d\n\n"), "- |-\n  a\n  b\n- |\n  c\n- |+\n  d\n\n"),
    (("a\n", "b"), "- |\n  a\n- b\n"),
    ({"a": "x\n", "b": "y"}, "a: |\n    x\nb: 'y'\n"),
    ({"k": ("a\nb",)}, "k:\n    - |-\n      a\n      b\n"),
    ((("a\nb",),), "- - |-\n    a\n    b\n"),
    (({"k": "a\nb"},), "- k: |-\n    a\n    b\n"),
    (({"k": "a\nb", "j": "x\n"},), "- j: |\n    x\n  k: |-\n    a\n    b\n"),
    ({"k": {"j": "a\nb"}}, "k:\n    j: |-\n        a\n        b\n"),
    (({"k": ("a\nb",)},), "- k:\n    - |-\n      a\n      b\n"),
    ({"k": "a\n b"}, "k: |-\n    a\n     b\n"),  # a space after a break needs no hint
    ({"k": "a\n\n b\n"}, "k: |\n    a\n\n     b\n"),
    # U+2028 inside a literal is a line break too: written raw, then the indentation.
    ({"k": "a\u2028b\nc"}, "k: |-\n    a\u2028    b\n    c\n"),
    ({"k": "a\u2028b\n"}, "k: |\n    a\u2028    b\n"),
    # Single-quoted scalars with line breaks (U+2028/U+2029 without a "\n": not a literal).
    ({"k": "\u2028a"}, "k: '\u2028    a'\n"),
    ({"k": "a\u2028"}, "k: 'a\u2028'\n"),
    ({"k": "\u2028a\u2029b"}, "k: '\u2028    a\u2029    b'\n"),
    ({"k": "a\u2028\u2029b"}, "k: 'a\u2028\u2029    b'\n"),
    ({"k": "it's\u2028x"}, "k: 'it''s\u2028    x'\n"),
    (("\u2028a",), "- '\u2028  a'\n"),
    ((("\u2028a",),), "- - '\u2028    a'\n"),
    (AnyKeyMap(((1, "\u2028a"),)), "1: '\u2028    a'\n"),
    # A space next to such a break rules single quotes out.
    ({"k": "a\u2028 b"}, 'k: "a\\L b"\n'),
    ({"k": "a \u2028b"}, 'k: "a \\Lb"\n'),
    # !!binary: the tag after "key:", "- " or "? ", plain or a literal block.
    ((_BINARY_SHORT,), "- !!binary /w==\n"),
    ((_BINARY_LONG,), f"- !!binary |\n  {_B64_LONG[:70]}\n  {_B64_LONG[70:]}\n"),
    ({"k": (_BINARY_LONG,)}, f"k:\n    - !!binary |\n      {_B64_LONG[:70]}\n      CQ\n"),
    ({_BINARY_SHORT: "v"}, "!!binary /w==: v\n"),
    ({_BINARY_LONG: "v"}, f"? !!binary |\n    {_B64_LONG[:70]}\n    CQ\n: v\n"),
    # Complex keys: a nested collection stays on the ":" line, padded to its indent.
    ({"a\nb": "v"}, "? |-\n    a\n    b\n: v\n"),
    ({"a\nb": ("x", "y")}, "? |-\n    a\n    b\n:   - x\n    - 'y'\n"),
    ({"a\nb": {"c": "d"}}, "? |-\n    a\n    b\n:   c: d\n"),
    ({"a\nb": ("x",), "c": 1}, "? |-\n    a\n    b\n:   - x\nc: 1\n"),
    ({"a\nb": {"c": {"d": ("e",)}}}, "? |-\n    a\n    b\n:   c:\n        d:\n            - e\n"),
    ({"a\nb": {}}, "? |-\n    a\n    b\n: {}\n"),
    ({"a\nb": ()}, "? |-\n    a\n    b\n: []\n"),
    (({"a\nb": "v"},), "- ? |-\n    a\n    b\n  : v\n"),
    ({"k": {"a\nb": "v"}}, "k:\n    ? |-\n        a\n        b\n    : v\n"),
    ({"x" * 129: {"c": "d"}}, "? " + "x" * 129 + "\n:   c: d\n"),
    ({"\u2028a": "v"}, "? '\u2028    a'\n: v\n"),
    (({"\u2028a": "v"},), "- ? '\u2028    a'\n  : v\n"),
    # Maps with keys of other types, nested and empty, and empty collections after an indicator.
    (AnyKeyMap(((1, "a\nb"), (2, ("x",)))), "1: |-\n    a\n    b\n2:\n    - x\n"),
    ((AnyKeyMap(((1, {}), (None, ()))),), "- 1: {}\n  null: []\n"),
    ({"x": {"k": AnyKeyMap(((1, "a"),))}}, "x:\n    k:\n        1: a\n"),
    ({"x": AnyKeyMap(())}, "x: {}\n"),
    (
        {"x": AnyKeyMap(((None, "n"), (1.5, "f"), ("s", "t")))},
        "x:\n    1.5: f\n    null: 'n'\n    s: t\n",
    ),
    (({}, (), ((),)), "- {}\n- []\n- - []\n"),
]


@pytest.mark.parametrize(("value", "expected"), DOCUMENTS)
def test_full_emitter_bytes(value: object, expected: str) -> None:
    assert marshal(value, fast=False) == expected.encode("utf-8", "surrogateescape")
    # The default path gives the same bytes, whichever writer takes the document.
    assert marshal(value) == expected.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # libyaml is_printable's edges: C0, DEL and C1 escaped, U+00A0..U+D7FF and U+E000..U+FFFD
        # raw except the BOM, U+FFFE/U+FFFF and the astral planes escaped (\x, \u, \U by size).
        ("a\x1f", '"a\\x1F"'),
        ("a ~", "a ~"),
        ("a\x7f", '"a\\x7F"'),
        ("a\x9f", '"a\\x9F"'),
        ("a\xa0", "a\xa0"),
        ("a\ud7ff", "a\ud7ff"),
        ("a\ue000", "a\ue000"),
        ("a\ufffd", "a\ufffd"),
        ("a\ufeffb", '"a\\uFEFFb"'),
        ("a\ufffe", '"a\\uFFFE"'),
        ("a\uffff", '"a\\uFFFF"'),
        ("a\U00010000", '"a\\U00010000"'),
        # A leading BOM escapes every character, printable or not.
        ("\ufeff\xff\u0100", '"\\uFEFF\\xFF\\u0100"'),
        ("\ufeffa b", '"\\uFEFF\\x61\\x20\\x62"'),
        # Indicators at the start, and ':' / '#' next to blanks.
        ("?", "'?'"),
        (":", "':'"),
        ("-", "'-'"),
        ("?a", "?a"),
        (":a", ":a"),
        ("a:", "'a:'"),
        ("a:b", "a:b"),
        ("a #", "'a #'"),
        ("a#", "a#"),
        ("-\x7f", '"-\\x7F"'),
        ("a\t", '"a\\t"'),
        (" ", "' '"),
        ("  ", "'  '"),
        ("a  b", "a  b"),
    ],
)
def test_scalar_style_and_escapes(value: str, expected: str) -> None:
    line = f"v: {expected}\n".encode()
    assert marshal({"v": value}) == marshal({"v": value}, fast=False) == line


@pytest.mark.parametrize(
    ("value", "result"),
    [
        ("a", ("a", "", "plain")),
        ("", ("", "", "double")),  # reads back as null
        ("1", ("1", "", "double")),
        ("true", ("true", "", "double")),
        ("2001-12-14", ("2001-12-14", "", "double")),
        ("a b", ("a b", "", "plain")),  # the emitter, not the representer, rules out plain
        (" a", (" a", "", "plain")),
        ("yes", ("yes", "", "single")),  # YAML 1.1 bool
        ("Off", ("Off", "", "single")),
        ("1:20", ("1:20", "", "single")),  # base 60
        ("+1:20", ("+1:20", "", "single")),
        ("-1:20:30.5", ("-1:20:30.5", "", "single")),
        ("<<", ("<<", "", "single")),
        ("a\nb", ("a\nb", "", "literal")),
        ("a\n", ("a\n", "", "literal")),
        ("\n", ("\n", "", "double")),  # a literal needs 2+ characters, one not a space
        (" \n", (" \n", "", "double")),
        ("\n\n", ("\n\n", "", "double")),
        ("a\u2028b", ("a\u2028b", "", "plain")),  # only "\n" asks for a literal
        (_BINARY_SHORT, ("/w==", "!!binary", "plain")),
        (_BINARY_LONG, (f"{_B64_LONG[:70]}\n{_B64_LONG[70:]}\n", "!!binary", "literal")),
    ],
)
def test_represent_string_requested_style(value: str, result: tuple[str, str, str]) -> None:
    assert represent_string(value) == result


@pytest.mark.parametrize(
    ("text", "base60"),
    [
        ("1:20", True),
        ("+1:20", True),
        ("-1:20", True),
        ("1_0:59:1.5_", True),
        ("1:60", False),  # minutes and seconds below 60
        ("a1:20", False),
        (":20", False),
        ("120", False),  # no colon
        ("", False),
        ("*1:20", False),
    ],
)
def test_base60_floats(text: str, base60: bool) -> None:
    assert gr.is_base60_float(text) is base60


@pytest.mark.parametrize(
    ("keys", "order"),
    [
        # Go sums digit runs in an int64 that wraps (the Go spec defines signed overflow as
        # two's complement): 10^19 wraps to a negative number, 2^63 to int64's minimum.
        (["a2", "a10000000000000000000"], ["a10000000000000000000", "a2"]),
        (["a1", "a9223372036854775808"], ["a9223372036854775808", "a1"]),
        (["a9223372036854775807", "a1"], ["a1", "a9223372036854775807"]),
        # 10^20 = 7766279631452241920 (mod 2^64), positive again and below 2^63.
        (
            ["a100000000000000000000", "a7766279631452241921"],
            ["a100000000000000000000", "a7766279631452241921"],
        ),
        (
            ["a100000000000000000000", "a7766279631452241919"],
            ["a7766279631452241919", "a100000000000000000000"],
        ),
        # Wrapped values: -2717295700634286712 (24 digits) < 4022; -1239099548510257845 (20
        # digits) < 849444179789288262 (24 digits).
        (["x927315107289678525449608", "x04022"], ["x927315107289678525449608", "x04022"]),
        (
            ["x911528261102463572841286", "x72547876746327948619"],
            ["x72547876746327948619", "x911528261102463572841286"],
        ),
    ],
)
def test_digit_runs_wrap_like_go_int64(keys: list[str], order: list[str]) -> None:
    assert sorted_keys(keys) == order


# ---- the two writers on everything the fast writer takes ------------------------------------------

_WORDS = st.sampled_from(
    [
        "",
        "y",
        "n",
        "yes",
        "No",
        "ON",
        "off",
        "true",
        "False",
        "null",
        "~",
        "<<",
        "=",
        "0",
        "-0",
        "+1",
        "007",
        "0o17",
        "0x_1F",
        "0b101",
        "1_000",
        "1e3",
        ".5",
        "-.inf",
        ".NaN",
        "1:20",
        "-1:20:30",
        "2001-12-14",
        "2001-12-14 21:59:43.10",
        "18446744073709551616",
        "9223372036854775808",
        "-",
        "?",
        ":",
        "---",
        "...",
        "- a",
        "a: b",
        "a #b",
        "#",
        "'",
        '"',
        "\\",
        " a",
        "a ",
        "\t",
        "\x7f",
        "\x85",
        "\x9f",
        "\xa0",
        "\u2028",
        "\u2029",
        "\ufeff",
        "\ufffe",
        "\U0001f600",
        "é",
        "a" * 129,
        "é" * 64 + "x",
        "word " * 40,
    ]
)
_PIECES = st.one_of(
    _WORDS,
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=6),
    st.text(st.sampled_from(" \t\n:#-'\"\x7f\x85\u2028ab1"), max_size=6),
)
# Concatenations of tricky pieces, so that indicators, breaks and blanks meet at every position.
_ANY_STRING = st.lists(_PIECES, max_size=3).map("".join)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=gr.INT64_MIN, max_value=gr.UINT64_MAX),
    st.floats(),
    _ANY_STRING,
)
_DOCUMENT = st.recursive(
    _SCALAR,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(_ANY_STRING, children, max_size=4),
        st.lists(st.tuples(_ANY_STRING, children), max_size=4).map(lambda p: GoStruct(tuple(p))),
        st.just(AnyKeyMap(())),
    ),
    max_leaves=20,
)


@given(st.dictionaries(_ANY_STRING, _DOCUMENT, max_size=5))
def test_both_writers_agree(document: dict[str, object]) -> None:
    fast = goyaml._fast_document(document)
    full = marshal(document, fast=False)
    if fast is not None:
        assert fast.encode("utf-8", "surrogateescape") == full
    assert marshal(document) == full


@pytest.mark.parametrize(
    ("keys", "order"),
    [
        # A zero run after a non-digit counts as 0 however long; after a nonzero digit its zeros
        # count as digits (the run is compared as 1 followed by it).
        (["x05", "x001"], ["x001", "x05"]),
        (["x0005", "x013"], ["x0005", "x013"]),
        (["x23", "x000a0"], ["x000a0", "x23"]),
        (["x10002", "x105"], ["x105", "x10002"]),
        # ...and that leading 1 takes part in the int64 wrap: 1715162046610990695848 wraps to
        # -385152243997604440, below 10401198036494205.
        (
            ["x80401198036494205", "x8715162046610990695848"],
            ["x8715162046610990695848", "x80401198036494205"],
        ),
    ],
)
def test_zero_runs_in_natural_order(keys: list[str], order: list[str]) -> None:
    assert sorted_keys(keys) == order


@pytest.mark.parametrize(
    ("keys", "order"),
    [
        ([1.5, 2], [1.5, 2]),  # numbers of different kinds by value, in either position
        ([2, 1.5], [1.5, 2]),
        ([2**53 + 1, 2**53], [2**53, 2**53 + 1]),  # equal as float64: compared as integers
        ([2**53, 2**53 + 1], [2**53, 2**53 + 1]),
    ],
)
def test_numeric_key_order(keys: list[object], order: list[object]) -> None:
    assert sorted_keys(keys) == order


@pytest.mark.parametrize(
    ("value", "result"),
    [
        ("a", ("a", "", "plain")),
        ("yes", ("yes", "", "single")),
        (None, ("null", "", "plain")),
        (True, ("true", "", "plain")),
        (False, ("false", "", "plain")),
        (-3, ("-3", "", "plain")),
        (gr.UINT64_MAX, ("18446744073709551615", "", "plain")),
        (0.5, ("0.5", "", "plain")),
        (gr.GoTime("2001-12-14T21:59:43Z"), ("2001-12-14T21:59:43Z", "", "plain")),
    ],
)
def test_represent_scalar(value: object, result: tuple[str, str, str]) -> None:
    assert goyaml.represent_scalar(value) == result


def test_values_of_other_types_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"^cannot marshal object$"):
        marshal({"a": object()})


def test_single_quoted_breaks_end_the_line_for_the_next_key() -> None:
    value = {"x": {"k": "a\u2028", "l": "v"}, "z": "\u2029b"}
    expected = "x:\n    k: 'a\u2028'\n    l: v\nz: '\u2029    b'\n"
    assert marshal(value, fast=False) == marshal(value) == expected.encode()


@pytest.mark.parametrize(
    "value",
    [
        {"a": ()},
        {"a": {}},
        {"a": AnyKeyMap(())},
        {"a": GoStruct(())},
        {"a": ((), {}), "b": ({"c": ()},)},
        GoStruct((("a", ("x", ("y", {}))), ("b", {"c": {"d": []}}))),
    ],
)
def test_fast_writer_takes_empty_and_nested_collections(value: object) -> None:
    text = goyaml._fast_document(value)
    assert text is not None
    assert text.encode() == marshal(value, fast=False)


# ---- the emitter's writers leave the state go-yaml's writers leave -------------------------------
#
# (text, column, whitespace, indention) after one writer: what the next write depends on. Upstream:
# writeIndicator sets whitespace to its is_whitespace argument and keeps indention only if the
# indicator is an indentation one; the plain, quoted and tag writers end with whitespace and
# indention false; writeLiteralScalar leaves whitespace true and indention false after text;
# writeIndent breaks the line when not at an indentation or past the indent.


def _state(emitter: goyaml._Emitter) -> tuple[str, int, bool, bool]:
    return "".join(emitter.out), emitter.column, bool(emitter.whitespace), bool(emitter.indention)


@pytest.mark.parametrize(
    ("value", "state"),
    [
        ("a", ("a", 1, False, False)),
        ("yes", ("'yes'", 5, False, False)),
        ("1", ('"1"', 3, False, False)),
        (_BINARY_SHORT, ("!!binary /w==", 13, False, False)),
        ("\u2028a", ("'\u2028    a'", 6, False, False)),
        ("a\nb", ("|-\n    a\n    b", 5, True, False)),
        ({}, ("{}", 2, False, False)),
        ((), ("[]", 2, False, False)),
    ],
)
def test_writer_end_state(value: object, state: tuple[str, int, bool, bool]) -> None:
    emitter = goyaml._Emitter()
    emitter.node(value, False)
    assert _state(emitter) == state


def test_indicator_keeps_indention_only_when_both_say_so() -> None:
    emitter = goyaml._Emitter()
    emitter.indicator("-", True, False, True)
    assert _state(emitter) == ("-", 1, False, True)
    emitter.indention = False
    emitter.indicator(":", True, False, True)
    assert _state(emitter) == ("- :", 3, False, False)


def test_write_indent_breaks_past_the_indent_even_at_an_indentation() -> None:
    emitter = goyaml._Emitter()
    emitter.indent = 0
    emitter.put("ab")  # indention still true: nothing but text since the start
    emitter.write_indent()
    assert _state(emitter) == ("ab\n", 0, True, True)
