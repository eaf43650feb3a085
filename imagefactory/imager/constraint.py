"""Extension compatibility constraints: blang/semver v4 ranges, as upstream's validator reads them.

`>= v1.1.0`, `>=1.2.0 <1.9.0`, `<1.5.0 || >=1.7.0`, wildcards `1.2.x`; a `v` before a digit is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from imagefactory.errors import InvalidInput
from imagefactory.versions import TalosVersion

_IDENT = re.compile(r"[0-9A-Za-z-]+")
_COMPARATORS: dict[str, Callable[[int], bool]] = {
    "": lambda c: c == 0,
    "=": lambda c: c == 0,
    "==": lambda c: c == 0,
    "!": lambda c: c != 0,
    "!=": lambda c: c != 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
}


class ConstraintError(ValueError):
    """The constraint text is not a blang/semver range."""


@dataclass(frozen=True)
class SemVer:
    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()

    def compare(self, other: SemVer) -> int:
        for a, b in ((self.major, other.major), (self.minor, other.minor)):
            if a != b:
                return -1 if a < b else 1
        if self.patch != other.patch:
            return -1 if self.patch < other.patch else 1
        return _compare_pre(self.pre, other.pre)


def _compare_pre(a: tuple[int | str, ...], b: tuple[int | str, ...]) -> int:
    # A release outranks its pre-releases; numeric identifiers rank below alphanumeric ones.
    if not a or not b:
        return (not a) - (not b)
    for x, y in zip(a, b, strict=False):
        if x == y:
            continue
        if isinstance(x, int) and isinstance(y, int):
            return -1 if x < y else 1
        if isinstance(x, int) or isinstance(y, int):
            return -1 if isinstance(x, int) else 1
        return -1 if x < y else 1
    return (len(a) > len(b)) - (len(a) < len(b))


def _number(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ConstraintError(f"invalid character(s) found in {what} number {text!r}")
    if len(text) > 1 and text[0] == "0":
        raise ConstraintError(f"{what} number must not contain leading zeroes {text!r}")
    return int(text)


def parse_semver(text: str) -> SemVer:
    """blang/semver Parse: strict MAJOR.MINOR.PATCH[-pre][+build]; build metadata is ignored."""
    if not text:
        raise ConstraintError("version string empty")
    parts = text.split(".", 2)
    if len(parts) != 3:
        raise ConstraintError(f"no Major.Minor.Patch elements found in {text!r}")
    major = _number(parts[0], "major")
    minor = _number(parts[1], "minor")
    rest = parts[2]
    cut = min((i for i in (rest.find("+"), rest.find("-")) if i >= 0), default=len(rest))
    patch = _number(rest[:cut], "patch")
    pre: list[int | str] = []
    pre_text, plus, build = rest[cut:].partition("+")
    if pre_text:
        for ident in pre_text[1:].split("."):
            if not _IDENT.fullmatch(ident):
                raise ConstraintError(f"invalid pre-release identifier {ident!r} in {text!r}")
            pre.append(_number(ident, "pre-release") if ident.isdigit() else ident)
    if plus:
        for ident in build.split("."):
            if not _IDENT.fullmatch(ident):
                raise ConstraintError(f"invalid build identifier {ident!r} in {text!r}")
    return SemVer(major, minor, patch, tuple(pre))


def trim_v(constraint: str) -> str:
    """Drop every `v` that stands right before a digit (upstream's trim)."""
    return re.sub(r"v(?=[0-9])", "", constraint)


def _split_and_trim(text: str) -> list[str]:
    # Spaces split terms, except right after an operator character: `>= 1.0` is one term.
    result: list[str] = []
    last = 0
    last_char = ""
    for i, ch in enumerate(text):
        if ch == " " and last_char not in (">", "<", "="):
            if last < i - 1:
                result.append(text[last:i])
            last = i + 1
        elif ch != " ":
            last_char = ch
    if last < len(text) - 1:
        result.append(text[last:])
    return [part.replace(" ", "") for part in result]


def _split_or(parts: list[str]) -> list[list[str]]:
    groups: list[list[str]] = []
    last = 0
    for i, part in enumerate(parts):
        if part == "||":
            if i == 0:
                raise ConstraintError("first element in range is '||'")
            groups.append(parts[last:i])
            last = i + 1
    if last == len(parts):
        raise ConstraintError("last element in range is '||'")
    groups.append(parts[last:])
    return groups


def _split_comparator(term: str) -> tuple[str, str]:
    for i, ch in enumerate(term):
        if ch.isdigit():
            return term[:i].strip(), term[i:]
    raise ConstraintError(f"could not get version from string {term!r}")


def _bump(version: str, index: int) -> str:
    parts = version.split(".")
    try:
        parts[index] = str(int(parts[index]) + 1)
    except (ValueError, IndexError):
        return ""
    return ".".join(parts)


def _expand_wildcard(term: str) -> list[str]:
    """`1.2.x` style terms become plain comparisons, the way blang/semver rewrites them."""
    op, version = _split_comparator(term)
    pieces = version.split(".")
    kind = len(pieces) if pieces[-1] == "x" else 0  # 2: minor wildcard, 3: patch wildcard
    flat = version.replace(".x.x", ".x", 1).replace(".x", ".0", 1)
    if len(flat.split(".")) == 2:
        flat += ".0"
    extra: list[str] = []
    increment = False
    if op == ">":
        result_op, increment = ">=", True
    elif op in (">=", "<"):
        result_op = op
    elif op == "<=":
        result_op, increment = "<", True
    elif op in ("", "=", "=="):
        extra, result_op, increment = [">=" + flat], "<", True
    elif op in ("!=", "!"):
        extra, result_op, increment = ["<" + flat], ">=", True
    else:
        result_op = ""
    # A patch wildcard bumps the minor, a minor wildcard the major; others leave no version.
    bump_index = {3: 1, 2: 0}.get(kind)
    target = flat if not increment else "" if bump_index is None else _bump(flat, bump_index)
    return [*extra, result_op + target]


Range = tuple[tuple[tuple[str, SemVer], ...], ...]


def parse_range(constraint: str) -> Range:
    """Parse a constraint (after trim_v) into OR-groups of AND-ed (operator, version) terms."""
    groups = _split_or(_split_and_trim(constraint))
    parsed: list[tuple[tuple[str, SemVer], ...]] = []
    for group in groups:
        terms: list[str] = []
        for term in group:
            terms.extend(_expand_wildcard(term) if "x" in term else [term])
        anded: list[tuple[str, SemVer]] = []
        for term in terms:
            op, version = _split_comparator(term)
            if op not in _COMPARATORS:
                raise ConstraintError(f"could not parse comparator {op!r} in {term!r}")
            anded.append((op, parse_semver(version)))
        parsed.append(tuple(anded))
    return tuple(parsed)


def range_matches(parsed: Range, version: SemVer) -> bool:
    return any(
        all(_COMPARATORS[op](version.compare(bound)) for op, bound in group) for group in parsed
    )


def satisfies(constraint: str, version: TalosVersion) -> bool:
    """Whether the Talos release (pre-release dropped) meets the constraint; empty means any.

    Raises InvalidInput when the constraint can't be parsed.
    """
    if constraint == "":
        return True
    try:
        parsed = parse_range(trim_v(constraint))
    except ConstraintError as exc:
        raise InvalidInput(f"error parsing Talos version constraint {constraint!r}: {exc}") from exc
    return range_matches(parsed, SemVer(version.major, version.minor, version.patch))
