"""The content-addressed blob store: verified blobs by digest under root/blobs/sha256/<hex>.

A blob enters under a temporary name, is checked against its digest, then renamed into place.
"""

from __future__ import annotations

from pathlib import Path

from imagefactory.errors import InvalidInput
from imagefactory.oci.digest import add_verified, check_digest, file_chunks
from imagefactory.oci.target import Target


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest).removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def fetch(self, target: Target, repository: str, digest: str) -> Path:
        """The path of the blob, downloading and verifying it first unless already present."""
        path = self.path(digest)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            target.fetch_blob(repository, digest, path)
        return path

    def add_file(self, source: Path) -> str:
        source = Path(source)
        if not source.is_file():
            raise InvalidInput(f"store {self.root}: not a file: {source}")
        return add_verified(file_chunks(source), self.blobs, None, f"store {self.root}: {source}")

    def add_bytes(self, data: bytes) -> str:
        return add_verified([data], self.blobs, None, f"store {self.root}")
