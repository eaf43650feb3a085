"""Go yaml.Marshal (go.yaml.in/yaml/v4, v3 defaults: indent 4, no folding, legacy quoting), byte
for byte, for the value types a schematic holds: GoStruct, dict, AnyKeyMap, tuple, scalars."""

from __future__ import annotations

import base64
import functools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imagefactory import goresolve as gr
from imagefactory.yamlload import AnyKeyMap

BEST_INDENT = 4
MAX_SIMPLE_KEY = 128

_PLAIN, _SINGLE, _DOUBLE, _LITERAL = "plain", "single", "double", "literal"
_BREAKS = frozenset("\r\n\x85\u2028\u2029")
_ESCAPES = {
    0x00: "0",
    0x07: "a",
    0x08: "b",
    0x09: "t",
    0x0A: "n",
    0x0B: "v",
    0x0C: "f",
    0x0D: "r",
    0x1B: "e",
    0x22: '"',
    0x5C: "\\",
    0x85: "N",
    0xA0: "_",
    0x2028: "L",
    0x2029: "P",
}


@dataclass(frozen=True)
class GoStruct:
    """A Go struct: fields in declaration order, omitempty already applied by the caller."""

    fields: tuple[tuple[str, Any], ...]


def _printable(ch: str) -> bool:
    """libyaml is_printable on the UTF-8 bytes: no C0/C1 controls, no astral plane, no BOM."""
    c = ord(ch)
    return (
        c == 0x0A
        or 0x20 <= c <= 0x7E
        or 0xA0 <= c <= 0xD7FF
        or (0xE000 <= c <= 0xFFFD and c != 0xFEFF)
    )


@dataclass(frozen=True)
class _Analysis:
    multiline: bool
    block_plain: bool
    single_quoted: bool
    block: bool


@functools.lru_cache(maxsize=4096)
def _analyze(value: str) -> _Analysis:
    """emitter analyzeScalar, for block context (flow_level is always 0 here)."""
    if not value:
        return _Analysis(multiline=False, block_plain=True, single_quoted=True, block=False)
    block_indicators = value.startswith(("---", "..."))
    line_breaks = special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = previous_space = previous_break = False
    preceded_by_ws = True
    last = len(value) - 1
    for i, ch in enumerate(value):
        followed_by_ws = i == last or value[i + 1] in " \t"
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`":
                block_indicators = True
            elif ch in "?:" or ch == "-":
                block_indicators = block_indicators or followed_by_ws
        elif (ch == ":" and followed_by_ws) or (ch == "#" and preceded_by_ws):
            block_indicators = True
        if ch == "\t":
            tabs = True
        elif not _printable(ch):
            special = True
        if ch == " ":
            leading_space = leading_space or i == 0
            trailing_space = trailing_space or i == last
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif ch in _BREAKS:
            line_breaks = True
            leading_break = leading_break or i == 0
            trailing_break = trailing_break or i == last
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_ws = ch in " \t\x00" or ch in _BREAKS
    block_plain = not (
        leading_space
        or leading_break
        or trailing_space
        or trailing_break
        or break_space
        or space_break
        or tabs
        or special
        or line_breaks
        or block_indicators
    )
    single_quoted = not (break_space or space_break or tabs or special)
    block = not (trailing_space or space_break or special)
    return _Analysis(line_breaks, block_plain, single_quoted, block)


def _encode_base64(raw: bytes) -> str:
    """resolve.go encodeBase64: 70-column lines, each newline-terminated when there are several."""
    text = base64.b64encode(raw).decode("ascii")
    if len(text) // 70 + 1 == 1:
        return text
    return "".join(text[i : i + 70] + "\n" for i in range(0, len(text), 70))


def _should_use_literal(s: str) -> bool:
    return len(s) >= 2 and any(not ch.isspace() for ch in s)


def represent_string(s: str) -> tuple[str, str, str]:
    """(text, tag, requested style) for a Go string: representer stringv + desolver."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        text = _encode_base64(s.encode("utf-8", "surrogateescape"))
        style = _LITERAL if "\n" in text and _should_use_literal(text) else _PLAIN
        return text, gr.BINARY, style
    if "\n" in s:
        return s, "", _LITERAL if _should_use_literal(s) else _DOUBLE
    # v4 marks YAML 1.1 bools, base-60 numbers and "<<" single-quoted (v3 used double quotes).
    if gr.is_old_bool(s) or gr.is_base60_float(s) or s == "<<":
        return s, "", _SINGLE
    # A string that would read back as another type is double-quoted (QuoteLegacy).
    return s, "", _PLAIN if gr.resolved_tag(s) == gr.STR else _DOUBLE


def represent_scalar(value: Any) -> tuple[str, str, str]:
    if isinstance(value, str):
        return represent_string(value)
    if value is None:
        return "null", "", _PLAIN
    if isinstance(value, bool):
        return ("true" if value else "false"), "", _PLAIN
    if isinstance(value, int):
        return str(value), "", _PLAIN
    if isinstance(value, float):
        return gr.format_float(value), "", _PLAIN
    if isinstance(value, gr.GoTime):
        return value.text, "", _PLAIN
    raise TypeError(f"cannot marshal {type(value).__name__}")


# ---- map key order (representer keyList.Less) -------------------------------------------------

_KIND_BOOL, _KIND_INT, _KIND_UINT, _KIND_FLOAT = 1, 2, 11, 14
_KIND_NIL, _KIND_STRING, _KIND_STRUCT = 20, 24, 25


def _kind(value: Any) -> int:
    if value is None:
        return _KIND_NIL
    if isinstance(value, bool):
        return _KIND_BOOL
    if isinstance(value, int):
        return _KIND_UINT if value > gr.INT64_MAX else _KIND_INT
    if isinstance(value, float):
        return _KIND_FLOAT
    if isinstance(value, str):
        return _KIND_STRING
    return _KIND_STRUCT


def _wrap64(n: int) -> int:
    n &= (1 << 64) - 1
    return n - (1 << 64) if n >= 1 << 63 else n


def _is_digit(ch: str) -> bool:
    return unicodedata.category(ch) == "Nd"


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def _string_less(a: str, b: str) -> bool:
    """Natural order: letters before digits after a digit run, digit runs compared as numbers."""
    digits = False
    for i in range(min(len(a), len(b))):
        ca, cb = a[i], b[i]
        if ca == cb:
            digits = _is_digit(ca)
            continue
        al, bl = _is_letter(ca), _is_letter(cb)
        if al and bl:
            return ca < cb
        if al or bl:
            return al if digits else bl
        an = bn = 0
        if ca == "0" or cb == "0":
            j = i - 1
            while j >= 0 and _is_digit(a[j]):
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and _is_digit(a[ai]):
            an = _wrap64(an * 10 + ord(a[ai]) - 48)
            ai += 1
        bi = i
        while bi < len(b) and _is_digit(b[bi]):
            bn = _wrap64(bn * 10 + ord(b[bi]) - 48)
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ca < cb
    return len(a) < len(b)


def _key_less(a: Any, b: Any) -> bool:
    ak, bk = _kind(a), _kind(b)
    if ak <= _KIND_FLOAT and bk <= _KIND_FLOAT:
        af, bf = float(a), float(b)
        if af != bf:
            return af < bf
        if ak != bk:
            return ak < bk
        return bool(a < b)
    if ak != _KIND_STRING or bk != _KIND_STRING:
        return ak < bk
    return _string_less(a, b)


def _compare(a: Any, b: Any) -> int:
    if _key_less(a, b):
        return -1
    return 1 if _key_less(b, a) else 0


def _compare_pairs(a: tuple[Any, Any], b: tuple[Any, Any]) -> int:
    return _compare(a[0], b[0])


def sorted_keys(keys: Sequence[Any]) -> list[Any]:
    return sorted(keys, key=functools.cmp_to_key(_compare))


# ---- emitter ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How one scalar is written: the emitter's style choice made once per distinct string."""

    text: str
    tag: str
    style: str
    body: str  # the finished scalar text when it needs no indentation (plain, quoted)
    simple_key: bool


@functools.lru_cache(maxsize=8192)
def _plan(value: str, as_key: bool) -> _Plan:
    text, tag, style = represent_string(value)
    info = _analyze(text)
    # emitter selectScalarStyle in block context; a key is in simple-key context.
    simple = as_key and (
        not info.multiline
        and len(tag) + len(text.encode("utf-8", "surrogateescape")) <= MAX_SIMPLE_KEY
    )
    if simple and info.multiline:
        style = _DOUBLE
    if style == _PLAIN and (not info.block_plain or (not text and simple)):
        style = _SINGLE
    if style == _SINGLE and not info.single_quoted:
        style = _DOUBLE
    if style == _LITERAL and (not info.block or simple):
        style = _DOUBLE
    body = ""
    if style == _PLAIN:
        body = text
    elif style == _DOUBLE:
        escape_all = text.startswith("\ufeff")  # libyaml's is_bom checks the value's start
        body = (
            '"'
            + "".join(
                "\\" + _escape(ord(ch))
                if escape_all or ch in _BREAKS or ch in '"\\' or not _printable(ch)
                else ch
                for ch in text
            )
            + '"'
        )
    elif style == _SINGLE and not any(ch in _BREAKS for ch in text):
        body = "'" + text.replace("'", "''") + "'"
    return _Plan(text, tag, style, body, simple)


class _Emitter:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.column = 0
        self.whitespace = True
        self.indention = True
        self.indent = -1

    # libyaml primitives

    def put(self, text: str) -> None:
        self.out.append(text)
        self.column += len(text)

    def put_break(self) -> None:
        self.out.append("\n")
        self.column = 0
        self.indention = True

    def write_break(self, ch: str) -> None:
        if ch == "\n":
            self.put_break()
        else:
            self.out.append(ch)
            self.column = 0
            self.indention = True

    def write_indent(self) -> None:
        indent = self.indent if self.indent > 0 else 0
        if (
            not self.indention
            or self.column > indent
            or (self.column == indent and not self.whitespace)
        ):
            self.out.append("\n")
            self.column = 0
            self.indention = True
        if self.column < indent:
            self.out.append(" " * (indent - self.column))
            self.column = indent
        self.whitespace = True

    def indicator(self, text: str, need_ws: bool, is_ws: bool, is_indention: bool) -> None:
        if need_ws and not self.whitespace:
            self.put(" ")
        self.put(text)
        self.whitespace = is_ws
        self.indention = self.indention and is_indention

    def nested_indent(self, flow: bool, in_sequence_item: bool) -> int:
        """emitter increaseIndent: the indent a child is written at."""
        if self.indent < 0:
            return BEST_INDENT if flow else 0
        if in_sequence_item:
            # The first indent inside a sequence item just skips the "- " indicator.
            return self.indent + 2
        return BEST_INDENT * ((self.indent + BEST_INDENT) // BEST_INDENT)

    # nodes

    def node(self, value: Any, in_sequence_item: bool) -> None:
        if isinstance(value, GoStruct):
            self.mapping(value.fields, in_sequence_item)
        elif isinstance(value, dict):
            self.mapping([(k, value[k]) for k in sorted_keys(list(value))], in_sequence_item)
        elif isinstance(value, AnyKeyMap):
            pairs = sorted(value.items, key=functools.cmp_to_key(_compare_pairs))
            self.mapping(pairs, in_sequence_item)
        elif isinstance(value, (tuple, list)):
            self.sequence(value, in_sequence_item)
        else:
            self.scalar(value, in_sequence_item, as_key=False)

    def mapping(self, items: Sequence[tuple[Any, Any]], in_sequence_item: bool) -> None:
        if not items:
            self.indicator("{", True, True, False)
            self.indicator("}", False, False, False)
            return
        outer = self.indent
        self.indent = self.nested_indent(False, in_sequence_item)
        for key, value in items:
            self.write_indent()
            # A key longer than 128 bytes (tag included) or spanning lines is written "? key".
            if not isinstance(key, str) or _plan(key, True).simple_key:
                self.scalar(key, False, as_key=True)
                self.indicator(":", False, False, False)
            else:
                self.indicator("?", True, False, True)
                self.scalar(key, False, as_key=False)
                self.write_indent()
                self.indicator(":", True, False, True)
            self.node(value, False)
        self.indent = outer

    def sequence(self, items: Sequence[Any], in_sequence_item: bool) -> None:
        if not items:
            self.indicator("[", True, True, False)
            self.indicator("]", False, False, False)
            return
        outer = self.indent
        self.indent = self.nested_indent(False, in_sequence_item)
        for item in items:
            self.write_indent()
            self.indicator("-", True, False, True)
            self.node(item, True)
        self.indent = outer

    def scalar(self, value: Any, in_sequence_item: bool, as_key: bool) -> None:
        if not isinstance(value, str):
            # Numbers, bools, null and timestamps always fit a plain scalar.
            self.plain(represent_scalar(value)[0])
            return
        plan = _plan(value, as_key)
        if plan.tag:
            if not self.whitespace:
                self.put(" ")
            self.put(plan.tag)
            self.whitespace = False
            self.indention = False
        if plan.body:
            if plan.style == _PLAIN:
                self.plain(plan.body)
                return
            if not self.whitespace:
                self.put(" ")
            self.put(plan.body)
            self.whitespace = False
            self.indention = False
            return
        outer = self.indent
        self.indent = self.nested_indent(True, in_sequence_item)
        if plan.style == _PLAIN:
            self.plain(plan.text)
        elif plan.style == _SINGLE:
            self.single_quoted(plan.text)
        else:
            self.literal(plan.text)
        self.indent = outer

    def plain(self, text: str) -> None:
        if text:
            if not self.whitespace:
                self.put(" ")
            self.put(text)
            self.whitespace = False
        self.indention = False

    def single_quoted(self, text: str) -> None:
        self.indicator("'", True, False, False)
        breaks = False
        for ch in text:
            if ch in _BREAKS:
                if not breaks and ch == "\n":
                    self.put_break()
                self.write_break(ch)
                breaks = True
                continue
            if breaks:
                self.write_indent()
            self.put("''" if ch == "'" else ch)
            self.indention = False
            breaks = False
        self.indicator("'", False, False, False)
        self.whitespace = False
        self.indention = False

    def literal(self, text: str) -> None:
        self.indicator("|", True, False, False)
        if text[0] == " ":
            self.indicator(str(BEST_INDENT), False, False, False)
        if text[-1] not in _BREAKS:
            self.indicator("-", False, False, False)
        elif len(text) == 1 or text[-2] in _BREAKS:
            self.indicator("+", False, False, False)
        # v4 always breaks after the header (go-yaml issue 755: v3 lost a leading newline).
        self.put_break()
        self.whitespace = True
        breaks = True
        for ch in text:
            if ch in _BREAKS:
                self.write_break(ch)
                breaks = True
                continue
            if breaks:
                self.write_indent()
            self.put(ch)
            self.indention = False
            breaks = False


def _escape(code: int) -> str:
    short = _ESCAPES.get(code)
    if short is not None:
        return short
    if code <= 0xFF:
        return f"x{code:02X}"
    if code <= 0xFFFF:
        return f"u{code:04X}"
    return f"U{code:08X}"


def marshal(value: Any, *, fast: bool = True) -> bytes:
    """yaml.Marshal(value) for one document; never emits `---` or `...`.

    `fast=False` forces the full emitter (the reference the fast writer is tested against).
    """
    text = _fast_document(value) if fast else None
    if text is None:
        emitter = _Emitter()
        emitter.node(value, False)
        emitter.write_indent()  # document end
        text = "".join(emitter.out)
    return text.encode("utf-8", "surrogateescape")


# ---- fast writer ------------------------------------------------------------------------------
#
# Block collections whose scalars all fit on their line (plain or quoted, no tag) lay out in a
# fixed way, so they are written without the emitter's state machine; anything else returns None.


def _fast_document(value: Any) -> str | None:
    items = _fast_items(value)
    if not items:
        return None
    out: list[str] = []
    return "".join(out) if _fast_mapping(items, 0, False, out) else None


def _fast_items(value: Any) -> Sequence[tuple[Any, Any]] | None:
    if isinstance(value, GoStruct):
        return value.fields
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return [(key, value[key]) for key in sorted_keys(list(value))]
    return None


def inline_scalar(value: Any) -> str | None:
    """A scalar's finished text when it fits on its line after "key:" or "-" (plain or quoted,
    untagged), or None when it needs the full emitter (block scalar, !!binary, not a scalar)."""
    if isinstance(value, str):
        plan = _plan(value, False)
        return plan.body if plan.body and not plan.tag else None
    if value is None or isinstance(value, (bool, int, float, gr.GoTime)):
        return represent_scalar(value)[0]
    return None


def _fast_value(value: Any, out: list[str], indent: int, in_sequence_item: bool) -> bool:
    """A value after "key:" or "-": its text, or a nested collection on the next lines."""
    text = inline_scalar(value)
    if text is not None:
        out.append(" " + text + "\n")
        return True
    if isinstance(value, (tuple, list)):
        if not value:
            out.append(" []\n")
            return True
        if in_sequence_item:
            # The first item shares the line: "- - a".
            out.append(" ")
            return _fast_sequence(value, indent + 2, True, out)
        out.append("\n")
        return _fast_sequence(
            value, BEST_INDENT * ((indent + BEST_INDENT) // BEST_INDENT), False, out
        )
    items = _fast_items(value)
    if items is None and not isinstance(value, AnyKeyMap):
        return False
    if not items:
        if isinstance(value, AnyKeyMap) and value.items:
            return False
        out.append(" {}\n")
        return True
    if in_sequence_item:
        # The first key shares the line: "- key: value".
        out.append(" ")
        return _fast_mapping(items, indent + 2, True, out)
    out.append("\n")
    return _fast_mapping(items, BEST_INDENT * ((indent + BEST_INDENT) // BEST_INDENT), False, out)


def _fast_mapping(
    items: Sequence[tuple[Any, Any]], indent: int, inline: bool, out: list[str]
) -> bool:
    pad = " " * indent
    for key, value in items:
        plan = _plan(key, True)
        if not (plan.simple_key and plan.body and not plan.tag):
            return False
        out.append(plan.body + ":" if inline else pad + plan.body + ":")
        inline = False
        if not _fast_value(value, out, indent, False):
            return False
    return True


def _fast_sequence(items: Sequence[Any], indent: int, inline: bool, out: list[str]) -> bool:
    pad = " " * indent
    for item in items:
        out.append("-" if inline else pad + "-")
        inline = False
        if not _fast_value(item, out, indent, True):
            return False
    return True
