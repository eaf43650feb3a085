"""The simple-signing payload: exact bytes, parsing, claims checks and bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.errors import InvalidInput
from imagefactory.signing import payload

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def test_encode_is_cosigns_exact_bytes() -> None:
    assert payload.encode("127.0.0.1:5000/siderolabs/imager:v1.9.0", DIGEST) == (
        b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/siderolabs/imager"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )


@pytest.mark.parametrize(
    ("reference", "repository"),
    [
        ("ghcr.io/siderolabs/imager", "ghcr.io/siderolabs/imager"),
        ("ghcr.io/siderolabs/imager:v1.9.0", "ghcr.io/siderolabs/imager"),
        ("127.0.0.1:5000/a/b@" + DIGEST, "127.0.0.1:5000/a/b"),
        ("127.0.0.1:5000/a/b:t@" + DIGEST, "127.0.0.1:5000/a/b"),
        ("localhost:5000/x", "localhost:5000/x"),
    ],
)
def test_repository_reference_drops_tag_and_digest(reference: str, repository: str) -> None:
    assert payload.repository_reference(reference) == repository


@pytest.mark.parametrize("reference", ["", "Ghcr.io/UPPER/case", "host/a//b", "host/a b", "/x"])
def test_repository_reference_refuses_malformed(reference: str) -> None:
    with pytest.raises(InvalidInput, match="not an image repository reference"):
        payload.repository_reference(reference)


@pytest.mark.parametrize("digest", ["sha256:abc", "sha512:" + "a" * 128, "sha256:" + "A" * 64, ""])
def test_encode_refuses_bad_digest(digest: str) -> None:
    with pytest.raises(InvalidInput, match="not a sha256 digest"):
        payload.encode("ghcr.io/a/b", digest)


@given(
    repo=st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}", fullmatch=True),
    tag=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
    hexdigest=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
)
def test_encode_decode_round_trip(repo: str, tag: str | None, hexdigest: str) -> None:
    reference = f"registry.example:5000/{repo}" + (f":{tag}" if tag else "")
    digest = f"sha256:{hexdigest}"
    data = payload.encode(reference, digest)
    claims = payload.decode(data)
    assert claims == payload.SimpleSigning(f"registry.example:5000/{repo}", digest)
    payload.check_claims(claims, digest, reference)
    # compact, deterministic
    assert b": " not in data and b", " not in data
    assert payload.encode(reference, digest) == data


@given(st.binary(max_size=200))
def test_decode_never_crashes_on_garbage(data: bytes) -> None:
    try:
        claims = payload.decode(data)
    except payload.PayloadError as exc:
        assert str(exc)  # a reason, never an empty message
        return
    # What decodes is well-typed claims that re-encode to an equivalent payload.
    assert isinstance(claims, payload.SimpleSigning)
    assert all(isinstance(v, str) for v in (claims.docker_reference, claims.manifest_digest))
    assert isinstance(claims.type, str)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "not a JSON object"),
        ({}, "no critical"),
        ({"critical": []}, "critical is not a dict"),
        ({"critical": {"image": {}, "type": "x"}}, "no critical.identity"),
        ({"critical": {"identity": {}, "image": {}, "type": "x"}}, "docker-reference"),
        (
            {"critical": {"identity": {"docker-reference": "a"}, "image": {}, "type": "x"}},
            "docker-manifest-digest",
        ),
        (
            {
                "critical": {
                    "identity": {"docker-reference": "a"},
                    "image": {"docker-manifest-digest": DIGEST},
                    "type": 3,
                }
            },
            "critical.type is not a str",
        ),
        (
            {
                "critical": {
                    "identity": {"docker-reference": "a"},
                    "image": {"docker-manifest-digest": DIGEST},
                    "type": "x",
                },
                "optional": "creator",
            },
            "optional is neither null nor an object",
        ),
    ],
)
def test_decode_names_the_bad_field(document: object, message: str) -> None:
    with pytest.raises(payload.PayloadError, match=message):
        payload.decode(json.dumps(document).encode())


def test_decode_accepts_optional_object_from_other_signers() -> None:
    data = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": "h/a/b:amd64"},
                "image": {"docker-manifest-digest": DIGEST},
                "type": payload.PAYLOAD_TYPE,
            },
            "optional": {"creator": "containers/image 5.34.2", "timestamp": 1700000000},
        }
    ).encode()
    claims = payload.decode(data)
    assert claims == payload.SimpleSigning("h/a/b:amd64", DIGEST)
    payload.check_claims(claims, DIGEST, "h/a/b")
    with pytest.raises(payload.PayloadError, match="payload identity is"):
        payload.check_claims(claims, DIGEST, "h/a/c")


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (payload.SimpleSigning("h/a/b", DIGEST, "atomic container signature"), "payload type"),
        (payload.SimpleSigning("h/a/b", OTHER), f"signs digest {OTHER}"),
        (payload.SimpleSigning("h/a/other", DIGEST), "identity is 'h/a/other', not 'h/a/b'"),
        (payload.SimpleSigning("h/A", DIGEST), "payload identity"),
    ],
)
def test_check_claims_refuses(claims: payload.SimpleSigning, message: str) -> None:
    with pytest.raises(payload.PayloadError, match=message):
        payload.check_claims(claims, DIGEST, "h/a/b:latest")


def test_any_registry_identity_matches_the_path_under_any_host() -> None:
    from imagefactory.signing.payload import identity_matches

    assert identity_matches("ghcr.io/siderolabs/imager", "*/siderolabs/imager")
    assert identity_matches("mirror.local:5000/talos/siderolabs/imager", "*/siderolabs/imager")
    assert not identity_matches("ghcr.io/siderolabs/installer", "*/siderolabs/imager")
    assert not identity_matches("ghcr.io/evil-siderolabs/imager", "*/siderolabs/imager")
    assert not identity_matches("ghcr.io/siderolabs/imager", "ghcr.io/other/imager")
