"""The content store the published tree links into: every file once, by sha256, read-only.

A built file enters by a hard link (no copy of a large file); small files by an atomic write.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from imagefactory.config import Config
from imagefactory.files import write_atomic

CHUNK = 1 << 20


@dataclass(frozen=True)
class Digests:
    sha256: str  # hex
    sha512: str  # hex
    size: int

    def to_json(self) -> dict[str, str | int]:
        return {"sha256": self.sha256, "sha512": self.sha512, "size": self.size}


def digests_of(path: Path) -> Digests:
    """Both digests in one read."""
    h256, h512, size = hashlib.sha256(), hashlib.sha512(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            h256.update(chunk)
            h512.update(chunk)
            size += len(chunk)
    return Digests(h256.hexdigest(), h512.hexdigest(), size)


class ContentStore:
    """store/blobs/blobs/sha256/<hex>: the same directory the source blobs and installer layers use."""

    def __init__(self, config: Config) -> None:
        self.root = config.store / "blobs" / "blobs" / "sha256"

    def path(self, hex_digest: str) -> Path:
        return self.root / hex_digest

    def has(self, hex_digest: str) -> bool:
        return self.path(hex_digest).is_file()

    def add_file(self, source: Path) -> Digests:
        """Link `source` in under its digest (copy only across file systems); read-only."""
        digests = digests_of(source)
        dest = self.path(digests.sha256)
        if not dest.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
            tmp.unlink(missing_ok=True)
            try:
                os.link(source, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                shutil.copyfile(source, tmp)
            # Store files are never edited: a published link must not change the store's bytes.
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        return digests

    def add_bytes(self, data: bytes) -> str:
        hex_digest = hashlib.sha256(data).hexdigest()
        dest = self.path(hex_digest)
        if not dest.is_file():
            write_atomic(dest, data, mode=0o444)
        return hex_digest
