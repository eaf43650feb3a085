"""An OCI image layout directory (oci-layout, index.json, blobs/sha256/...) as a Target.

Tags are recorded as org.opencontainers.image.ref.name = "<repository>:<tag>" in index.json.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from imagefactory.errors import BuildError, InvalidInput, NotFound
from imagefactory.files import write_atomic
from imagefactory.oci import media
from imagefactory.oci.digest import (
    VerifyingReader,
    add_verified,
    buffered,
    check_digest,
    file_chunks,
    sha256_bytes,
    write_verified,
)
from imagefactory.oci.model import (
    HOST_RE,
    Descriptor,
    canonical_json,
    check_reference,
    check_repository,
    is_digest,
    manifest_media_type,
    parse_manifest,
)
from imagefactory.oci.registry import RegistryTarget
from imagefactory.oci.target import Target

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


class LayoutTarget:
    """Reads and writes one layout directory; writers serialise on a lock of the oci-layout file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"oci-layout:{self.root}"

    # -- paths and index -------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def _what(self, repository: str, reference: str) -> str:
        sep = "@" if is_digest(reference) else ":"
        return f"{self.name}/{repository}{sep}{reference}"

    def _ensure(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise InvalidInput(f"{self.name}: not a directory")
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            marker.write_bytes(canonical_json(LAYOUT_VERSION))
        if not (self.root / "index.json").exists():
            self._write_index([])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure()
        with (self.root / "oci-layout").open("rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read_index(self) -> list[dict[str, Any]]:
        path = self.root / "index.json"
        if not path.exists():
            return []
        obj = parse_manifest(path.read_bytes(), f"{self.name}/index.json")
        manifests = obj.get("manifests", [])
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise InvalidInput(f"{self.name}/index.json: manifests must be a list of objects")
        return manifests

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": manifests}
        write_atomic(self.root / "index.json", json.dumps(index, indent=2).encode() + b"\n")

    @staticmethod
    def _ref_name(entry: dict[str, Any]) -> str:
        annotations = entry.get("annotations") or {}
        value = annotations.get(media.LAYOUT_REF_NAME, "") if isinstance(annotations, dict) else ""
        return value if isinstance(value, str) else ""

    # -- Target ----------------------------------------------------------------------------

    def resolve(self, repository: str, reference: str) -> Descriptor:
        check_repository(repository)
        check_reference(reference)
        what = self._what(repository, reference)
        if is_digest(reference):
            path = self.blob_path(reference)
            if not path.is_file():
                raise NotFound(f"{what}: no such manifest")
            data = path.read_bytes()
            media_type = manifest_media_type(parse_manifest(data, what), what)
            return Descriptor(media_type=media_type, digest=reference, size=len(data))
        wanted = f"{repository}:{reference}"
        for entry in self._read_index():
            if self._ref_name(entry) == wanted:
                found = Descriptor.from_json(entry)
                return Descriptor(found.media_type, found.digest, found.size, found.platform)
        raise NotFound(f"{what}: no such tag")

    def get_manifest(self, repository: str, reference: str) -> tuple[Descriptor, bytes]:
        desc = self.resolve(repository, reference)
        what = self._what(repository, reference)
        path = self.blob_path(desc.digest)
        if not path.is_file():
            raise NotFound(f"{what}: manifest blob {desc.digest} is missing")
        data = path.read_bytes()
        got = sha256_bytes(data)
        if got != desc.digest or len(data) != desc.size:
            raise BuildError(f"{what}: manifest digest mismatch: expected {desc.digest}, got {got}")
        return desc, data

    def put_manifest(
        self, repository: str, data: bytes, media_type: str, tag: str | None = None
    ) -> Descriptor:
        check_repository(repository)
        if tag is not None and (is_digest(tag) or not check_reference(tag)):
            raise InvalidInput(f"not a tag: {tag!r}")
        digest = sha256_bytes(data)
        parse_manifest(data, self._what(repository, tag or digest))
        desc = Descriptor(media_type=media_type, digest=digest, size=len(data))
        with self._locked():
            path = self.blob_path(digest)
            if not path.exists():
                write_verified([data], path, digest, self._what(repository, digest))
            if tag is not None:
                name = f"{repository}:{tag}"
                entries = [e for e in self._read_index() if self._ref_name(e) != name]
                entry = desc.to_json()
                entry["annotations"] = {media.LAYOUT_REF_NAME: name}
                entries.append(entry)
                self._write_index(entries)
        return desc

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def _blob_or_missing(self, repository: str, digest: str) -> Path:
        path = self.blob_path(digest)
        if not path.is_file():
            raise NotFound(f"{self._what(repository, digest)}: no such blob")
        return path

    def fetch_blob(self, repository: str, digest: str, dest: Path) -> None:
        path = self._blob_or_missing(repository, digest)
        write_verified(file_chunks(path), Path(dest), digest, self._what(repository, digest))

    def open_blob(self, repository: str, digest: str) -> BinaryIO:
        f = self._blob_or_missing(repository, digest).open("rb")
        return buffered(VerifyingReader(f.read, digest, self._what(repository, digest), f.close))

    def push_blob(self, repository: str, source: Path, digest: str | None = None) -> str:
        check_repository(repository)
        if digest is not None and self.has_blob(repository, digest):
            return digest
        self._ensure()
        what = f"{self.name}/{repository}: blob from {source}"
        return add_verified(file_chunks(Path(source)), self.root / "blobs" / "sha256", digest, what)

    def push_blob_bytes(self, repository: str, data: bytes) -> str:
        check_repository(repository)
        digest = sha256_bytes(data)
        if not self.has_blob(repository, digest):
            self._ensure()
            write_verified([data], self.blob_path(digest), digest, self._what(repository, digest))
        return digest

    def list_tags(self, repository: str) -> list[str]:
        check_repository(repository)
        prefix = f"{repository}:"
        tags = [
            name.removeprefix(prefix)
            for name in map(self._ref_name, self._read_index())
            if name.startswith(prefix)
        ]
        if not tags:
            raise NotFound(f"{self.name}/{repository}: no such repository")
        return sorted(tags)

    def delete_manifest(self, repository: str, digest: str) -> None:
        check_repository(repository)
        check_digest(digest)
        if not self.blob_path(digest).is_file():
            raise NotFound(f"{self._what(repository, digest)}: no such manifest")
        prefix = f"{repository}:"
        with self._locked():
            entries = self._read_index()
            kept = [
                e
                for e in entries
                if not (e.get("digest") == digest and self._ref_name(e).startswith(prefix))
            ]
            self._write_index(kept)
            if not any(e.get("digest") == digest for e in kept):
                self.blob_path(digest).unlink(missing_ok=True)


def open_target(
    spec: str,
    *,
    insecure: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> Target:
    """ "oci-layout:/path" or an existing directory gives a LayoutTarget; "host[:port]" a registry."""
    usage = "(want host[:port] or oci-layout:/path)"
    if not isinstance(spec, str) or not spec:
        raise InvalidInput(f"not an image target: {spec!r} {usage}")
    if spec.startswith("oci-layout:"):
        path = spec.removeprefix("oci-layout:")
        if not path:
            raise InvalidInput(f"not an image target: {spec!r}: oci-layout: needs a path")
        return LayoutTarget(Path(path))
    if "/" in spec or Path(spec).is_dir():
        if not Path(spec).is_dir():
            raise InvalidInput(f"not an image target: {spec!r}: no such directory")
        return LayoutTarget(Path(spec))
    if not HOST_RE.match(spec):
        raise InvalidInput(f"not an image target: {spec!r} {usage}")
    return RegistryTarget(spec, insecure=insecure, username=username, password=password)
