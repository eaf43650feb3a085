"""Talos versions of the sample release and what the sample changes between them.

What differs per version comes from the project's one quirks table (imagefactory/quirks.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from imagefactory.errors import InvalidInput
from imagefactory.quirks import Compression, Quirks, quirks_for
from imagefactory.versions import TalosVersion

DEFAULT_VERSIONS = ("v1.7.7", "v1.9.6", "v1.11.5", "v1.13.0")

_TAG_RE = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")

# 2023-01-01T00:00:00Z; each version's SOURCE_DATE_EPOCH is a fixed offset from it.
_EPOCH_BASE = 1672531200

__all__ = ["DEFAULT_VERSIONS", "Compression", "SampleVersion", "parse_versions"]


@dataclass(frozen=True, order=True)
class SampleVersion:
    """One Talos release tag of the sample (`vX.Y.Z`, no pre-release)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SampleVersion:
        match = _TAG_RE.match(text.strip())
        if match is None:
            raise InvalidInput(f"sample version {text!r} is not a release tag like v1.9.6")
        major, minor, patch = (int(part) for part in match.groups())
        if (major, minor) < (1, 5):
            raise InvalidInput(
                f"sample version {text!r} is older than v1.5.0, which is unsupported"
            )
        return cls(major, minor, patch)

    @property
    def tag(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"

    @cached_property
    def quirks(self) -> Quirks:
        return quirks_for(TalosVersion(self.major, self.minor, self.patch))

    @property
    def source_date_epoch(self) -> int:
        """Fixed mtime of every file built for this version (one day per patch, 100 per minor)."""
        return _EPOCH_BASE + ((self.major - 1) * 10000 + self.minor * 100 + self.patch) * 86400

    @property
    def compression(self) -> Compression:
        return self.quirks.compression

    @property
    def usr_merged(self) -> bool:
        return self.quirks.usr_merge

    @property
    def modules_path(self) -> str:
        """Directory holding `<kver>/`, relative to the root (`lib/modules`, `usr/lib/modules`)."""
        return self.quirks.modules_path.lstrip("/")

    @property
    def firmware_path(self) -> str:
        return self.quirks.firmware_path.lstrip("/")

    @property
    def installer_repository(self) -> str:
        # The unified installer (1.10) publishes tools only, as installer-base.
        if self.quirks.unified_installer:
            return "siderolabs/installer-base"
        return "siderolabs/installer"

    @property
    def has_overlays(self) -> bool:
        return self.quirks.overlays


def parse_versions(text: str) -> tuple[SampleVersion, ...]:
    """Parse a comma-separated `--versions` value; sorted, duplicates refused."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise InvalidInput("--versions is empty; give tags like v1.9.6,v1.11.5")
    if not all(items):
        raise InvalidInput(f"--versions has an empty item: {text!r}")
    versions = [SampleVersion.parse(item) for item in items]
    if len(set(versions)) != len(versions):
        raise InvalidInput(f"--versions lists a version twice: {text!r}")
    return tuple(sorted(versions))
