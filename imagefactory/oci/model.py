"""Descriptors, platforms and image references of the OCI distribution model.

Frozen values shared by every target; canonical_json gives the exact bytes we push.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from imagefactory.errors import InvalidInput
from imagefactory.oci.digest import DIGEST_RE

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
HOST_RE = re.compile(
    r"^(?:localhost|\[[0-9a-fA-F:]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?$"
)
DEFAULT_REGISTRY = "docker.io"


def canonical_json(obj: Any) -> bytes:
    """Compact JSON, keys in the order given: the bytes whose sha256 is the pushed digest."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Platform:
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"platform must be an object, not {type(obj).__name__}")
        os_, arch, variant = obj.get("os"), obj.get("architecture"), obj.get("variant", "")
        if not isinstance(os_, str) or not isinstance(arch, str) or not isinstance(variant, str):
            raise InvalidInput(f"platform needs string os and architecture: {dict(obj)!r}")
        return cls(os=os_, architecture=arch, variant=variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _freeze(annotations: Mapping[str, str] | None) -> Mapping[str, str] | None:
    if not annotations:
        return None  # an empty map is not written out, so it reads back as None
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput(f"annotation {key!r} must map a string to a string")
    return MappingProxyType(dict(annotations))


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] | None = field(default=None, hash=False)
    artifact_type: str = ""

    def __post_init__(self) -> None:
        if not DIGEST_RE.match(self.digest):
            raise InvalidInput(f"descriptor digest is not sha256:<64 hex>: {self.digest!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise InvalidInput(f"descriptor size must be a non-negative integer: {self.size!r}")
        object.__setattr__(self, "annotations", _freeze(self.annotations))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        """Parse a descriptor object of a manifest or index; InvalidInput names what is wrong."""
        if not isinstance(obj, Mapping):
            raise InvalidInput(f"descriptor must be an object, not {type(obj).__name__}")
        media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise InvalidInput(f"descriptor needs string mediaType and digest: {dict(obj)!r}")
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidInput(f"descriptor size must be an integer: {dict(obj)!r}")
        platform = obj.get("platform")
        annotations = obj.get("annotations")
        if annotations is not None and not isinstance(annotations, Mapping):
            raise InvalidInput(f"descriptor annotations must be an object: {dict(obj)!r}")
        artifact_type = obj.get("artifactType", "")
        if not isinstance(artifact_type, str):
            raise InvalidInput(f"descriptor artifactType must be a string: {dict(obj)!r}")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            platform=None if platform is None else Platform.from_json(platform),
            annotations=annotations,
            artifact_type=artifact_type,
        )


@dataclass(frozen=True)
class Reference:
    """A registry image reference: "127.0.0.1:5000/siderolabs/imager:v1.9.0@sha256:..."."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if not HOST_RE.match(self.registry):
            raise InvalidInput(f"not a registry host: {self.registry!r}")
        if not REPOSITORY_RE.match(self.repository) or len(self.repository) > 255:
            raise InvalidInput(f"not a repository name: {self.repository!r}")
        if self.tag is not None and not TAG_RE.match(self.tag):
            raise InvalidInput(f"not a tag: {self.tag!r}")
        if self.digest is not None and not DIGEST_RE.match(self.digest):
            raise InvalidInput(f"not a sha256 digest: {self.digest!r}")

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse like docker does: a first component with "." or ":" (or localhost) is the host."""
        if not isinstance(text, str) or not text or text != text.strip():
            raise InvalidInput(f"not an image reference: {text!r}")
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, remainder
        else:
            registry, repository = DEFAULT_REGISTRY, rest
            if "/" not in repository:
                repository = "library/" + repository
        try:
            return cls(registry=registry, repository=repository, tag=tag, digest=digest)
        except InvalidInput as exc:
            raise InvalidInput(f"not an image reference: {text!r}: {exc}") from None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag ("latest" if none)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def is_digest(reference: str) -> bool:
    return bool(DIGEST_RE.match(reference))


def check_reference(reference: str) -> str:
    """A tag or digest as accepted by resolve/get_manifest; InvalidInput otherwise."""
    if not isinstance(reference, str) or not (TAG_RE.match(reference) or is_digest(reference)):
        raise InvalidInput(f"not a tag or sha256 digest: {reference!r}")
    return reference


def check_repository(repository: str) -> str:
    if not isinstance(repository, str) or not REPOSITORY_RE.match(repository):
        raise InvalidInput(f"not a repository name: {repository!r}")
    return repository


MAX_MANIFEST_BYTES = 4 << 20


def parse_manifest(data: bytes, what: str) -> dict[str, Any]:
    """Decode manifest or index bytes into an object; InvalidInput naming `what` if they aren't."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidInput(f"{what}: manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{what}: manifest is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"{what}: manifest is not a JSON object")
    return obj


def manifest_media_type(obj: Mapping[str, Any], what: str) -> str:
    """The mediaType of a manifest, guessed from its shape when the field is absent."""
    media_type = obj.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    if "manifests" in obj:
        return "application/vnd.oci.image.index.v1+json"
    if "config" in obj and "layers" in obj:
        return "application/vnd.oci.image.manifest.v1+json"
    raise InvalidInput(f"{what}: neither an image manifest nor an index")
