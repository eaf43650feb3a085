"""Go yaml (go.yaml.in/yaml/v4, v3 defaults) scalar rules: implicit tag resolution and formatting.

Shared by the schematic decoder and the canonical emitter so both agree on what a plain scalar means.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NULL = "!!null"
BOOL = "!!bool"
STR = "!!str"
INT = "!!int"
FLOAT = "!!float"
TIMESTAMP = "!!timestamp"
BINARY = "!!binary"
MERGE = "!!merge"
SEQ = "!!seq"
MAP = "!!map"

_LONG_PREFIX = "tag:yaml.org,2002:"
_RESOLVABLE = frozenset(("", STR, BOOL, INT, FLOAT, NULL, TIMESTAMP))

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1


class ResolveError(ValueError):
    """An explicit tag that the scalar's text does not satisfy (Go fails the whole decode)."""


@dataclass(frozen=True)
class GoTime:
    """A !!timestamp decoded into `any`: Go keeps a time.Time and re-emits it as RFC 3339 (nano)."""

    text: str


def short_tag(tag: str) -> str:
    if tag.startswith(_LONG_PREFIX):
        return "!!" + tag[len(_LONG_PREFIX) :]
    return tag


# resolve.go's table of exact spellings (YAML 1.2 core schema; yes/no/on/off are plain strings).
_EXACT: dict[str, tuple[str, Any]] = {}
for _spellings, _tag, _value in (
    (("true", "True", "TRUE"), BOOL, True),
    (("false", "False", "FALSE"), BOOL, False),
    (("", "~", "null", "Null", "NULL"), NULL, None),
    ((".nan", ".NaN", ".NAN"), FLOAT, math.nan),
    ((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), FLOAT, math.inf),
    (("-.inf", "-.Inf", "-.INF"), FLOAT, -math.inf),
    (("<<",), MERGE, "<<"),
):
    for _s in _spellings:
        _EXACT[_s] = (_tag, _value)

# First-byte hints of resolve.go: which scalars may be something other than a string.
_HINT_SIGN = frozenset("+-")
_HINT_DIGIT = frozenset("0123456789")
_HINT_MAP = frozenset("yYnNtTfFoO~")

_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
# strconv.ParseFloat on text starting with '.': underscores only between digits.
_DOT_FLOAT = re.compile(r"^\.[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+(?:_[0-9]+)*)?$")
_DIGITS = {
    16: re.compile(r"[0-9a-fA-F]+"),
    10: re.compile(r"[0-9]+"),
    8: re.compile(r"[0-7]*"),
    2: re.compile(r"[01]+"),
}


_UINT64_DIGITS = {2: 64, 8: 22, 10: 20, 16: 16}


def _go_parse_uint(s: str) -> int | None:
    """strconv.ParseUint(s, 0, 64) on text without underscores."""
    if not s:
        return None
    base, digits = 10, s
    if s[0] == "0":
        prefix = s[1:2].lower()
        if len(s) >= 3 and prefix in ("b", "o", "x"):
            base, digits = {"b": 2, "o": 8, "x": 16}[prefix], s[2:]
        else:
            base, digits = 8, s[1:]
    if not _DIGITS[base].fullmatch(digits):
        return None
    # Longer than any uint64 in this base: out of range (and Python refuses int() of 4300 digits).
    if len(digits.lstrip("0")) > _UINT64_DIGITS[base]:
        return None
    value = int(digits, base) if digits else 0
    return value if value <= UINT64_MAX else None


def _go_parse_int(s: str) -> int | None:
    """strconv.ParseInt(s, 0, 64) on text without underscores."""
    negative = s[:1] == "-"
    body = s[1:] if s[:1] in _HINT_SIGN else s
    magnitude = _go_parse_uint(body)
    if magnitude is None:
        return None
    value = -magnitude if negative else magnitude
    return value if INT64_MIN <= value <= INT64_MAX else None


def _finite_float(text: str) -> float | None:
    value = float(text)
    # Go's ParseFloat reports overflow to ±Inf as an error, so such text stays a string.
    return None if math.isinf(value) else value


_TS_DATE = r"(\d{4})-(\d{1,2})-(\d{1,2})"
_TS_TIME = r"(\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,](\d+))?"
_TS_ZONED = re.compile(rf"{_TS_DATE}[Tt]{_TS_TIME}(Z|[+-]\d\d:\d\d)")
_TS_SPACED = re.compile(rf"{_TS_DATE} +{_TS_TIME}")
_TS_DATE_ONLY = re.compile(_TS_DATE)
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in(month: int, year: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS[month - 1]


def parse_timestamp(s: str) -> GoTime | None:
    """resolve.go parseTimestamp: the four time.Parse layouts it tries, in order."""
    if len(s) < 5 or not s[:4].isascii() or not s[:4].isdigit() or s[4] != "-":
        return None
    zone = "Z"
    if m := _TS_ZONED.fullmatch(s):
        year, month, day, hour, minute, second, frac, zone = m.groups()
    elif m := _TS_SPACED.fullmatch(s):
        year, month, day, hour, minute, second, frac = m.groups()
    elif m := _TS_DATE_ONLY.fullmatch(s):
        year, month, day = m.groups()
        hour = minute = second = "0"
        frac = None
    else:
        return None
    y, mo, d, h, mi, se = (int(x) for x in (year, month, day, hour, minute, second))
    if not (1 <= mo <= 12 and 1 <= d <= _days_in(mo, y) and h < 24 and mi < 60 and se < 60):
        return None
    if zone != "Z" and (int(zone[1:3]) > 24 or int(zone[4:6]) > 60):
        return None
    if zone in ("+00:00", "-00:00"):
        zone = "Z"
    # time.Parse keeps at most nine fraction digits; RFC3339Nano drops trailing zeros.
    nanos = (frac or "")[:9].ljust(9, "0").rstrip("0")
    text = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{se:02d}"
    return GoTime(f"{text}.{nanos}{zone}" if nanos else f"{text}{zone}")


def resolve(tag: str, text: str) -> tuple[str, Any]:
    """resolver.go resolve(): (short tag, Go value) of a scalar that carries `tag` ("" if none).

    Go values: None, bool, int (int64 or uint64 range), float, str, GoTime.
    """
    if tag not in _RESOLVABLE:
        return tag, text
    rtag, value = _resolve_implicit(tag, text)
    if tag in ("", rtag, STR):
        return rtag, value
    # Go converts int and int64 results to float64, but not uint64 ones.
    if tag == FLOAT and rtag == INT and value <= INT64_MAX:
        return FLOAT, float(value)
    raise ResolveError(f"cannot construct {rtag} `{text}` as a {tag}")


def _resolve_implicit(tag: str, text: str) -> tuple[str, Any]:
    if tag == STR or not text:
        return (STR, text) if tag == STR else (NULL, None)
    first = text[0]
    if first not in _HINT_DIGIT and first not in _HINT_SIGN:
        if first in _HINT_MAP or first == ".":
            exact = _EXACT.get(text)
            if exact is not None:
                return exact
            if first == "." and _DOT_FLOAT.match(text):
                value = _finite_float(text.replace("_", ""))
                if value is not None:
                    return FLOAT, value
        elif text == "<<":
            return MERGE, "<<"
        return STR, text
    exact = _EXACT.get(text)
    if exact is not None:
        return exact
    if tag in ("", TIMESTAMP):
        stamp = parse_timestamp(text)
        if stamp is not None:
            return TIMESTAMP, stamp
    plain = text.replace("_", "")
    number = _go_parse_int(plain)
    if number is None and plain[:1] not in _HINT_SIGN:
        number = _go_parse_uint(plain)
    if number is not None:
        return INT, number
    if _YAML_FLOAT.match(plain):
        value = _finite_float(plain)
        if value is not None:
            return FLOAT, value
    return STR, text


def resolved_tag(text: str) -> str:
    """The tag a plain, untagged scalar with this text resolves to."""
    return _resolve_implicit("", text)[0]


_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
# YAML 1.1 bool spellings: go-yaml v4 quotes them when emitting strings and decodes them into
# typed bools, so one table serves both.
OLD_BOOLS: Mapping[str, bool] = dict.fromkeys(
    ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), True
) | dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), False)


def is_base60_float(s: str) -> bool:
    return bool(s) and (s[0] in "+-" or s[0].isdigit()) and ":" in s and bool(_BASE60.match(s))


def is_old_bool(s: str) -> bool:
    return s in OLD_BOOLS


def format_float(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64) with yaml's .inf/.nan spellings."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + int(exponent or "0") - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    exp = point - 1
    # Shortest 'g' switches to %e when the decimal exponent is < -4 or >= 6 (eprec = 6).
    if exp < -4 or exp >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"
