"""The one interface every image store implements: a registry or an OCI layout directory.

Build, pull, store and signing code speak only to this Protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol

from imagefactory.oci.model import Descriptor


class Target(Protocol):
    name: str

    def resolve(self, repository: str, reference: str) -> Descriptor: ...

    def get_manifest(self, repository: str, reference: str) -> tuple[Descriptor, bytes]: ...

    def put_manifest(
        self, repository: str, data: bytes, media_type: str, tag: str | None = None
    ) -> Descriptor: ...

    def has_blob(self, repository: str, digest: str) -> bool: ...

    def fetch_blob(self, repository: str, digest: str, dest: Path) -> None: ...

    def open_blob(self, repository: str, digest: str) -> BinaryIO: ...

    def push_blob(self, repository: str, source: Path, digest: str | None = None) -> str: ...

    def push_blob_bytes(self, repository: str, data: bytes) -> str: ...

    def list_tags(self, repository: str) -> list[str]: ...

    def delete_manifest(self, repository: str, digest: str) -> None: ...
