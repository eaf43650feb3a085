"""Keyless certificates: chain to the configured root, validity time, issuer and subject matching."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given
from hypothesis import strategies as st
from signing_testca import EPOCH, SigningCA

from imagefactory.errors import InvalidInput
from imagefactory.signing import keyless


@pytest.fixture(scope="module")
def ca() -> SigningCA:
    return SigningCA.create()


@pytest.fixture(scope="module")
def leaf_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_chain_verifies_inside_validity(
    ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = ca.issue(leaf_key)
    assert leaf.issuer == ca.intermediate.subject != ca.root.subject
    keyless.verify_chain(leaf, [ca.intermediate], [ca.root], EPOCH + timedelta(minutes=5))
    # the root may also come along in the chain annotation, as cosign writes it
    keyless.verify_chain(leaf, [ca.intermediate, ca.root], [ca.root], EPOCH)
    # the acceptance rests on the intermediate actually linking leaf and root
    with pytest.raises(keyless.CertificateError, match="does not chain to the trusted root"):
        keyless.verify_chain(leaf, [], [ca.root], EPOCH)


@pytest.mark.parametrize("minutes", [-1, 11])
def test_chain_refused_outside_validity(
    ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey, minutes: int
) -> None:
    leaf = ca.issue(leaf_key)
    with pytest.raises(keyless.CertificateError, match="does not chain to the trusted root"):
        keyless.verify_chain(leaf, [ca.intermediate], [ca.root], EPOCH + timedelta(minutes=minutes))


def test_chain_refused_for_another_root(
    ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    other = SigningCA.create("other")
    leaf = other.issue(leaf_key)
    with pytest.raises(keyless.CertificateError, match="does not chain"):
        keyless.verify_chain(leaf, [other.intermediate, other.root], [ca.root], EPOCH)
    with pytest.raises(keyless.CertificateError, match="does not chain"):
        keyless.verify_chain(ca.issue(leaf_key), [], [ca.root], EPOCH)
    with pytest.raises(keyless.CertificateError, match="no trusted root"):
        keyless.verify_chain(leaf, [other.intermediate], [], EPOCH)


def test_chain_refuses_a_leaf_not_for_code_signing(
    ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = ca.issue(leaf_key, code_signing=False)
    with pytest.raises(keyless.CertificateError, match="does not chain"):
        keyless.verify_chain(leaf, [ca.intermediate], [ca.root], EPOCH)


@pytest.mark.parametrize(("v1", "v2"), [(True, True), (True, False), (False, True)])
def test_issuer_from_either_extension(
    ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey, v1: bool, v2: bool
) -> None:
    leaf = ca.issue(leaf_key, issuer="https://token.example", issuer_v1=v1, issuer_v2=v2)
    assert keyless.certificate_issuer(leaf) == "https://token.example"


def test_no_issuer_extension(ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    leaf = ca.issue(leaf_key, issuer_v1=False, issuer_v2=False)
    with pytest.raises(keyless.CertificateError, match="no Fulcio OIDC issuer extension"):
        keyless.match_identity(leaf, keyless.Identity())


@given(st.binary(max_size=40))
def test_der_utf8_never_crashes(value: bytes) -> None:
    try:
        text = keyless._der_utf8(value)
    except keyless.CertificateError as exc:
        assert str(exc)  # a reason, never an empty message
        return
    # Accepted only as a UTF8String whose header is followed by exactly the text's bytes.
    assert value[0] == 0x0C
    assert value.endswith(text.encode())
    assert 2 <= len(value) - len(text.encode()) <= 6


@given(st.text(max_size=300))
def test_der_utf8_round_trip(text: str) -> None:
    data = text.encode()
    if len(data) < 128:
        header = bytes([0x0C, len(data)])
    else:
        length = len(data).to_bytes(2, "big")
        header = bytes([0x0C, 0x82]) + length
    assert keyless._der_utf8(header + data) == text


@pytest.mark.parametrize(
    "email",
    ["releasemgr@siderolabs.com", "releasemgr-svc@talos-production.iam.gserviceaccount.com"],
)
def test_default_identity_accepts_upstream_signers(
    ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey, email: str
) -> None:
    identity = keyless.match_identity(ca.issue(leaf_key, email=email), keyless.Identity())
    assert identity == keyless.CertIdentity(keyless.DEFAULT_ISSUER, (email,))


@pytest.mark.parametrize(
    ("email", "issuer", "message"),
    [
        ("mallory@example.com", keyless.DEFAULT_ISSUER, "subject mallory@example.com"),
        ("a@siderolabs.com.evil", keyless.DEFAULT_ISSUER, "does not match"),
        (
            "x-releasemgr-svc@talos-production.iam.gserviceaccount.com",
            keyless.DEFAULT_ISSUER,
            "mat",
        ),
        ("releasemgr@siderolabs.com", "https://token.actions.githubusercontent.com", "issuer"),
    ],
)
def test_default_identity_refuses_others(
    ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey, email: str, issuer: str, message: str
) -> None:
    with pytest.raises(keyless.CertificateError, match=message):
        keyless.match_identity(ca.issue(leaf_key, email=email, issuer=issuer), keyless.Identity())


def test_issuer_regexp(ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    leaf = ca.issue(leaf_key, issuer="https://oidc.example/tenant-7")
    identity = keyless.Identity(issuer="", issuer_regexp=r"^https://oidc\.example/")
    assert keyless.match_identity(leaf, identity).issuer == "https://oidc.example/tenant-7"
    with pytest.raises(keyless.CertificateError, match="does not match"):
        keyless.match_identity(leaf, keyless.Identity(issuer="", issuer_regexp="^https://other/"))


def test_uri_subject(ca: SigningCA, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    workflow = "https://github.com/siderolabs/talos/.github/workflows/release.yaml@refs/tags/v1"
    leaf = ca.issue(leaf_key, uri=workflow)
    assert keyless.certificate_subjects(leaf) == (workflow,)
    identity = keyless.Identity(subject_regexp=r"^https://github\.com/siderolabs/")
    assert keyless.match_identity(leaf, identity).subjects == (workflow,)


def test_no_san(ca: SigningCA) -> None:
    cert = ca.intermediate
    with pytest.raises(keyless.CertificateError, match="no subject alternative name"):
        keyless.certificate_subjects(cert)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"issuer": "", "issuer_regexp": ""}, "needs an issuer or an issuer regexp"),
        ({"subject_regexp": "("}, "subject regexp '\\(' is invalid"),
        ({"issuer_regexp": "[a"}, "issuer regexp"),
    ],
)
def test_identity_refuses_bad_config(options: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        keyless.Identity(**options)


def test_load_certificates_refuses_garbage() -> None:
    with pytest.raises(keyless.CertificateError, match="chain: not PEM certificates"):
        keyless.load_certificates(b"-----BEGIN CERTIFICATE-----\nAA==\n", "chain")
    with pytest.raises(keyless.CertificateError, match="empty: not PEM certificates"):
        keyless.load_certificates(b"", "empty")


def test_chain_refuses_intermediate_restricted_to_server_auth(
    leaf_key: ec.EllipticCurvePrivateKey,
) -> None:
    server_ca = SigningCA.create("server", intermediate_eku=ExtendedKeyUsageOID.SERVER_AUTH)
    leaf = server_ca.issue(leaf_key)
    with pytest.raises(keyless.CertificateError, match="does not chain"):
        keyless.verify_chain(leaf, [server_ca.intermediate], [server_ca.root], EPOCH)
