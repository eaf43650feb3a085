"""The cosign "simple signing" payload: what a signature says about an image.

Encoded compactly in cosign's key order so the same image always gives the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from imagefactory.errors import InvalidInput
from imagefactory.oci.digest import check_digest
from imagefactory.oci.model import HOST_RE, REPOSITORY_RE

PAYLOAD_TYPE = "cosign container image signature"


class PayloadError(ValueError):
    """The payload is not a well-formed simple-signing document; the message says why."""


@dataclass(frozen=True)
class SimpleSigning:
    """The claims of one signature payload."""

    docker_reference: str
    manifest_digest: str
    type: str = PAYLOAD_TYPE


def _is_repository(name: str) -> bool:
    """[registry[:port]/]path, with the distribution spec's lowercase path components."""
    host, slash, path = name.partition("/")
    if slash and ("." in host or ":" in host or host == "localhost") and HOST_RE.match(host):
        name = path
    return bool(REPOSITORY_RE.match(name))


def repository_reference(reference: str) -> str:
    """`host/repo` of a reference, without tag or digest (what cosign puts in the identity)."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    if not _is_repository(name):
        raise InvalidInput(f"not an image repository reference: {reference!r}")
    return name


def encode(docker_reference: str, digest: str) -> bytes:
    """The payload bytes cosign signs for `digest` pushed to `docker_reference` (tag ignored)."""
    document = {
        "critical": {
            "identity": {"docker-reference": repository_reference(docker_reference)},
            "image": {"docker-manifest-digest": check_digest(digest)},
            "type": PAYLOAD_TYPE,
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise PayloadError(f"payload has no {where}{key}")
    value = obj[key]
    if not isinstance(value, kind):
        raise PayloadError(f"payload {where}{key} is not a {kind.__name__}")
    return value


def decode(data: bytes) -> SimpleSigning:
    """Parse payload bytes; raise PayloadError naming the missing or malformed field."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"payload is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise PayloadError("payload is not a JSON object")
    critical = _field(document, "critical", dict, "")
    identity = _field(critical, "identity", dict, "critical.")
    image = _field(critical, "image", dict, "critical.")
    optional = document.get("optional")
    if optional is not None and not isinstance(optional, dict):
        raise PayloadError("payload optional is neither null nor an object")
    return SimpleSigning(
        docker_reference=_field(identity, "docker-reference", str, "critical.identity."),
        manifest_digest=_field(image, "docker-manifest-digest", str, "critical.image."),
        type=_field(critical, "type", str, "critical."),
    )


# An expected identity of "*/siderolabs/imager" accepts that repository path under any registry and
# namespace: mirrors copy upstream's signatures, whose identity still names ghcr.io.
ANY_REGISTRY = "*/"


def expected_identity(docker_reference: str) -> str:
    if docker_reference.startswith(ANY_REGISTRY):
        return docker_reference
    return repository_reference(docker_reference)


def identity_matches(signed: str, expected: str) -> bool:
    if expected.startswith(ANY_REGISTRY):
        path = expected.removeprefix(ANY_REGISTRY)
        return signed == path or signed.endswith("/" + path)
    return signed == expected


def check_claims(claims: SimpleSigning, digest: str, docker_reference: str) -> None:
    """Raise PayloadError unless the claims are a cosign signature of `digest` in that repo."""
    if claims.type != PAYLOAD_TYPE:
        raise PayloadError(f"payload type is {claims.type!r}, not {PAYLOAD_TYPE!r}")
    if claims.manifest_digest != digest:
        raise PayloadError(f"payload signs digest {claims.manifest_digest}, not {digest}")
    expected = expected_identity(docker_reference)
    try:
        signed = repository_reference(claims.docker_reference)
    except InvalidInput as exc:
        raise PayloadError(f"payload identity: {exc}") from exc
    if not identity_matches(signed, expected):
        raise PayloadError(f"payload identity is {signed!r}, not {expected!r}")
