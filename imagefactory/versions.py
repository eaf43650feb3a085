"""Talos versions: strict semver with an optional leading `v`, ordered by semver precedence.

Quirks look only at the release part (pre-release ignored), as upstream's quirks package does.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from imagefactory.errors import InvalidInput

# Nine digits at most: a version number is never larger, and Python refuses to int() 4300 digits.
_NUMBER = r"0|[1-9][0-9]{0,8}"
_IDENT = r"0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*"
_SEMVER = re.compile(
    rf"v?(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>(?:{_IDENT})(?:\.(?:{_IDENT}))*))?"
)


@functools.total_ordering
@dataclass(frozen=True)
class TalosVersion:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TalosVersion:
        match = _SEMVER.fullmatch(text) if len(text) <= 128 else None
        if match is None:
            shown = text if len(text) <= 64 else f"{text[:64]}..."
            raise InvalidInput(
                f"invalid Talos version {shown!r}: expected MAJOR.MINOR.PATCH[-PRERELEASE], "
                "optionally with a leading 'v' (e.g. v1.10.0 or 1.11.0-beta.1)"
            )
        pre = match.group("pre")
        return cls(
            int(match.group("major")),
            int(match.group("minor")),
            int(match.group("patch")),
            tuple(pre.split(".")) if pre else (),
        )

    @property
    def release(self) -> TalosVersion:
        """The version without its pre-release suffix (what quirks compare)."""
        return TalosVersion(self.major, self.minor, self.patch)

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    @property
    def tag(self) -> str:
        return f"v{self}"

    @property
    def minor_line(self) -> str:
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # Semver precedence: a release outranks its pre-releases; numeric identifiers
        # compare numerically and rank below alphanumeric ones.
        pre = tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part) for part in self.prerelease
        )
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, TalosVersion):
            return NotImplemented
        return self._key() < other._key()


def parse_version(text: str) -> TalosVersion:
    return TalosVersion.parse(text)
