"""Signing details the mutation run showed unguarded: the issuer extension's DER lengths, every
refusal's exact reason, reference parsing edge cases, and keyless checks in a non-UTC zone."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from signing_testca import EPOCH, SigningCA, SigningLog, keyless_sign

from imagefactory.config import KeylessIdentity, Verification
from imagefactory.errors import InvalidInput
from imagefactory.oci import media
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor
from imagefactory.signing import cosign, keyless, keys, payload, tlog
from imagefactory.signing.policy import Mode, RejectedError, SignatureError, Verifier

REPO = "siderolabs/imager"
REF = "ghcr.io/siderolabs/imager"
DIGEST = "sha256:" + "4" * 64


@pytest.fixture(scope="module")
def ca() -> SigningCA:
    return SigningCA.create()


@pytest.fixture(scope="module")
def log() -> SigningLog:
    return SigningLog.create()


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


# ---- keyless: the issuer extension and certificate refusals -------------------------------------


@pytest.mark.parametrize(
    ("der", "text"),
    [
        (b"\x0c\x05hello", "hello"),
        (b"\x0c\x81\x05hello", "hello"),  # long form, one length byte
        (b"\x0c\x82\x00\x05hello", "hello"),
        (b"\x0c\x84\x00\x00\x00\x05hello", "hello"),  # four length bytes: the most allowed
        (b"\x0c\x81\x00", ""),
        (b"\x0c\x81\xc8" + b"a" * 200, "a" * 200),
        (b"\x0c\x82\x01\x00" + b"b" * 256, "b" * 256),
        (b"\x0c\x06" + "héllo".encode(), "héllo"),
    ],
)
def test_der_utf8_reads_short_and_long_lengths(der: bytes, text: str) -> None:
    assert keyless._der_utf8(der) == text


@pytest.mark.parametrize(
    ("der", "message"),
    [
        (b"\x0c", "issuer extension is not a DER UTF8String"),
        (b"\x04\x01a", "issuer extension is not a DER UTF8String"),
        (b"\x0c\x80", "issuer extension has a bad DER length"),  # long form of no bytes
        (b"\x0c\x85\x00\x00\x00\x00\x05hello", "issuer extension has a bad DER length"),
        (b"\x0c\x82\x00", "issuer extension has a bad DER length"),  # truncated length
        (b"\x0c\x06hello", "issuer extension has a bad DER length"),
        (b"\x0c\x81\x04hello", "issuer extension has a bad DER length"),
        (b"\x0c\x02\xff\xfe", "issuer extension is not UTF-8"),
    ],
)
def test_der_utf8_refusals(der: bytes, message: str) -> None:
    with pytest.raises(keyless.CertificateError, match=exactly(message)):
        keyless._der_utf8(der)


def test_raw_issuer_must_be_utf8() -> None:
    assert keyless._raw_utf8("https://é".encode()) == "https://é"
    with pytest.raises(keyless.CertificateError, match=exactly("issuer extension is not UTF-8")):
        keyless._raw_utf8(b"\xff")


def test_certificate_refusals_say_exactly_why(ca: SigningCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(
        keyless.CertificateError, match=exactly("certificate has no Fulcio OIDC issuer extension")
    ):
        keyless.certificate_issuer(ca.issue(key, issuer_v1=False, issuer_v2=False))
    with pytest.raises(
        keyless.CertificateError, match=exactly("certificate has no subject alternative name")
    ):
        keyless.certificate_subjects(ca.intermediate)
    with pytest.raises(
        keyless.CertificateError, match=exactly("no trusted root certificate configured")
    ):
        keyless.verify_chain(ca.issue(key), [ca.intermediate], [], EPOCH)
    with pytest.raises(
        keyless.CertificateError,
        match=exactly("certificate subject releasemgr@siderolabs.com does not match 'nobody'"),
    ):
        keyless.match_identity(ca.issue(key), keyless.Identity(subject_regexp="nobody"))


def test_chain_refusals_name_the_extended_key_usage_rule(ca: SigningCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    at = EPOCH + timedelta(minutes=1)
    with pytest.raises(
        keyless.CertificateError,
        match=r"ValueError: leaf certificate is not for code signing \(encountered",
    ):
        keyless.verify_chain(ca.issue(key, code_signing=False), [ca.intermediate], [ca.root], at)
    server = SigningCA.create("server", intermediate_eku=keyless.ExtendedKeyUsageOID.SERVER_AUTH)
    with pytest.raises(
        keyless.CertificateError,
        match=r"ValueError: CA certificate does not allow code signing$",
    ):
        keyless.verify_chain(server.issue(key), [server.intermediate], [server.root], at)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"issuer": "", "issuer_regexp": ""},
            "keyless identity needs an issuer or an issuer regexp",
        ),
        ({"issuer_regexp": "[a"}, "keyless issuer regexp '[a' is invalid: "),
    ],
)
def test_identity_refusals_say_exactly_why(options: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        keyless.Identity(**options)
    assert str(info.value).startswith(message)
    assert message.endswith(": ") or str(info.value) == message


# ---- policy ---------------------------------------------------------------------------------------


def _verifier(ca: SigningCA, log: SigningLog | None) -> Verifier:
    return Verifier.keyless(keyless.Identity(), [ca.root], log.key.public_key() if log else None)


def _rejected(verifier: Verifier, signature: cosign.Signature) -> str:
    with pytest.raises(RejectedError) as info:
        verifier.check(signature, DIGEST, REF)
    return str(info.value)


def test_keyless_refusals_say_exactly_why(ca: SigningCA, log: SigningLog) -> None:
    good = keyless_sign(ca, log, DIGEST, REF)
    verifier = _verifier(ca, log)
    by_key = cosign.sign(keys.generate_key(), DIGEST, REF)
    assert (
        _rejected(verifier, by_key) == "no signing certificate (a keyless signature was expected)"
    )
    garbage = b"-----BEGIN CERTIFICATE-----\nAA==\n"
    reason = _rejected(verifier, dataclasses.replace(good, certificate=garbage))
    assert reason.startswith("certificate: not PEM certificates (")
    reason = _rejected(verifier, dataclasses.replace(good, chain=garbage))
    assert reason.startswith("chain: not PEM certificates (")
    assert _rejected(verifier, dataclasses.replace(good, bundle=None)) == (
        "no transparency log bundle"
    )


def test_keyless_leaf_may_carry_its_chain_in_the_certificate(
    ca: SigningCA, log: SigningLog
) -> None:
    good = keyless_sign(ca, log, DIGEST, REF)
    assert good.certificate is not None
    bundled = dataclasses.replace(good, certificate=good.certificate + ca.chain_pem(), chain=None)
    accepted = _verifier(ca, log).check(bundled, DIGEST, REF)
    assert accepted.signer == "releasemgr@siderolabs.com (https://accounts.google.com)"


def test_keyless_leaf_must_hold_an_ecdsa_key(ca: SigningCA) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = ca.issue(rsa_key, not_before=EPOCH, lifetime=timedelta(days=365 * 200))  # type: ignore[arg-type]
    signature = dataclasses.replace(
        cosign.sign(keys.generate_key(), DIGEST, REF),
        certificate=cert.public_bytes(Encoding.PEM),
        chain=ca.chain_pem(),
    )
    assert _rejected(_verifier(ca, None), signature) == "signing certificate key is not ECDSA"


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("tokyo")
def test_keyless_logged_time_is_utc_whatever_the_local_zone(ca: SigningCA, log: SigningLog) -> None:
    signed = keyless_sign(ca, log, DIGEST, REF)  # logged one minute into a ten-minute certificate
    assert _verifier(ca, log).check(signed, DIGEST, REF).integrated_time is not None


def test_verifier_refusals_say_exactly_why() -> None:
    with pytest.raises(InvalidInput, match=exactly("public-key verification needs a public key")):
        Verifier(Mode.PUBLIC_KEY)
    with pytest.raises(
        InvalidInput,
        match=exactly("keyless verification needs an identity and a root certificate"),
    ):
        Verifier(Mode.KEYLESS, identity=keyless.Identity())
    with pytest.raises(
        InvalidInput, match=exactly("sources.verify needs publicKey, keyless or disabled: true")
    ):
        Verifier.from_config(Verification())


def test_from_config_carries_the_whole_keyless_identity(tmp_path: Path, ca: SigningCA) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(ca.root.public_bytes(Encoding.PEM))
    identity = KeylessIdentity(
        issuer="https://issuer.example",
        issuer_regexp="^https://",
        subject_regexp="@example\\.org$",
        root_certificate=root,
        log_public_key=None,
    )
    verifier = Verifier.from_config(Verification(keyless=identity))
    assert verifier.identity == keyless.Identity(
        issuer="https://issuer.example", subject_regexp="@example\\.org$", issuer_regexp="^https://"
    )
    assert verifier.log_key is None


def test_disabled_verification_reports_the_image(layout: LayoutTarget, image: Descriptor) -> None:
    verified = Verifier.disabled().verify(layout, REPO, image.digest, REF)
    assert (verified.image, verified.digest) == (
        f"{layout.name}/{REPO}@{image.digest}",
        image.digest,
    )


def test_every_refused_layer_is_numbered_and_named(layout: LayoutTarget, image: Descriptor) -> None:
    key = keys.generate_key()
    for signer in (keys.generate_key(), keys.generate_key()):
        cosign.attach(layout, REPO, image.digest, cosign.sign(signer, image.digest, REF))
    layers = cosign.signature_layers(layout, REPO, image.digest)
    with pytest.raises(SignatureError) as info:
        Verifier.with_public_key(key.public_key()).verify(layout, REPO, image.digest, REF)
    reasons = "; ".join(
        f"signature {n} ({layer.digest[:19]}…): signature does not verify over the payload"
        for n, layer in enumerate(layers, 1)
    )
    assert str(info.value) == (
        f"signature verification failed for {layout.name}/{REPO}@{image.digest}: none of 2 "
        f"signature(s) was accepted: {reasons}"
    )


# ---- payload --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "repository"),
    [
        ("alpine", "alpine"),
        ("alpine:3", "alpine"),
        ("Registry.Example/foo", "Registry.Example/foo"),
        ("host/repo@sha256:abc@x", "host/repo"),
        ("localhost:5000/a/b:tag", "localhost:5000/a/b"),
    ],
)
def test_repository_reference_forms(reference: str, repository: str) -> None:
    assert payload.repository_reference(reference) == repository


@pytest.mark.parametrize("reference", ["Upper/foo", "a/b:c/d", "Registry_Example/foo"])
def test_repository_reference_refusals(reference: str) -> None:
    with pytest.raises(InvalidInput, match="not an image repository reference"):
        payload.repository_reference(reference)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"{", "payload is not JSON: "),
        (b"[]", "payload is not a JSON object"),
        (b'{"critical": {"identity": {}}}', "payload has no critical.image"),
        (b'{"critical": {"identity": {}, "image": 1}}', "payload critical.image is not a dict"),
        (
            b'{"critical": {"identity": {}, "image": {}, "type": "t"}, "optional": []}',
            "payload optional is neither null nor an object",
        ),
        (
            b'{"critical": {"identity": {}, "image": {}, "type": "t"}}',
            "payload has no critical.identity.docker-reference",
        ),
        (
            b'{"critical": {"identity": {"docker-reference": "a"}, "image": {}, "type": "t"}}',
            "payload has no critical.image.docker-manifest-digest",
        ),
    ],
)
def test_payload_refusals_name_the_field(document: bytes, message: str) -> None:
    with pytest.raises(payload.PayloadError) as info:
        payload.decode(document)
    assert str(info.value).startswith(message)
    assert message.endswith(": ") or str(info.value) == message


# ---- keys -----------------------------------------------------------------------------------------


def test_key_files_name_their_path_and_take_a_password(tmp_path: Path) -> None:
    key = keys.generate_key()
    encrypted = key.private_bytes(
        Encoding.PEM,
        keys.serialization.PrivateFormat.PKCS8,
        keys.serialization.BestAvailableEncryption(b"secret"),
    )
    path = tmp_path / "cosign.key"
    path.write_bytes(encrypted)
    assert keys.key_id(keys.load_private_key(path, b"secret")) == keys.key_id(key)
    with pytest.raises(InvalidInput, match=f"^{re.escape(str(path))}: not a PEM private key"):
        keys.load_private_key(path)
    (tmp_path / "cosign.pub").write_bytes(b"junk")
    with pytest.raises(InvalidInput, match=f"^{re.escape(str(tmp_path))}/cosign.pub: not a PEM"):
        keys.load_public_key(tmp_path / "cosign.pub")


def test_cosign_encrypted_keys_are_refused_with_the_export_hint() -> None:
    data = b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    with pytest.raises(InvalidInput) as info:
        keys.private_key_from_pem(data, "cosign.key")
    assert str(info.value) == (
        "cosign.key: cosign-encrypted private keys are not supported; export an unencrypted "
        "PKCS#8 PEM (e.g. `openssl pkcs8 -topk8 -nocrypt`)"
    )


def test_public_key_pem_of_a_public_key_and_its_file_mode(tmp_path: Path) -> None:
    key = keys.generate_key()
    assert keys.public_key_pem(key.public_key()) == keys.public_key_pem(key)
    old = os.umask(0o077)
    try:
        keys.save_public_key(key, tmp_path / "cosign.pub")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cosign.pub").stat().st_mode) == 0o644


# ---- transparency log -----------------------------------------------------------------------------


def test_bundle_refusals_say_exactly_why() -> None:
    cases = [
        ("[]", "bundle has no Payload object"),
        ('{"Payload": {"body": 1}}', "bundle Payload.body and Payload.logID must be strings"),
        (
            '{"Payload": {"body": "", "logID": "", "integratedTime": 1, "logIndex": 1}}',
            "bundle has no SignedEntryTimestamp",
        ),
        (
            '{"SignedEntryTimestamp": "!", "Payload": {"body": "", "logID": "",'
            ' "integratedTime": 1, "logIndex": 1}}',
            "SignedEntryTimestamp is not base64",
        ),
    ]
    for text, message in cases:
        with pytest.raises(tlog.BundleError, match=exactly(message)):
            tlog.Bundle.parse(text)


def test_log_entry_refusals_say_exactly_why(ca: SigningCA, log: SigningLog) -> None:
    signed = keyless_sign(ca, log, DIGEST, REF)
    assert signed.bundle is not None and signed.certificate is not None
    bundle = tlog.Bundle.parse(signed.bundle)
    der = keyless.load_certificates(signed.certificate, "leaf")[0].public_bytes(Encoding.DER)
    tlog.check_body(bundle, signed.signature, signed.payload, der)
    broken = dataclasses.replace(bundle, entry=dataclasses.replace(bundle.entry, body="!"))
    with pytest.raises(
        tlog.BundleError, match=exactly("bundle body is not JSON: bundle body is not base64")
    ):
        tlog.check_body(broken, signed.signature, signed.payload, der)
    cases = [
        ((signed.signature, b"other", der), "log entry hash does not match the signed payload"),
        ((b"other", signed.payload, der), "log entry signature differs from the image signature"),
        (
            (signed.signature, signed.payload, ca.root.public_bytes(Encoding.DER)),
            "log entry certificate differs from the signing certificate",
        ),
    ]
    for (signature, data, signer), message in cases:
        with pytest.raises(tlog.BundleError, match=exactly(message)):
            tlog.check_body(bundle, signature, data, signer)
    unsigned = dataclasses.replace(bundle, signed_entry_timestamp=b"0" * 70)
    with pytest.raises(
        tlog.BundleError,
        match=exactly("bundle SignedEntryTimestamp does not verify with the log key"),
    ):
        tlog.verify_set(unsigned, log.key.public_key())


def test_signature_manifest_is_schema_version_2() -> None:
    config = Descriptor(media.OCI_MANIFEST, "sha256:" + "a" * 64, 2)
    assert json.loads(cosign.signature_manifest(config, []))["schemaVersion"] == 2


def test_layer_of_exactly_the_payload_limit_is_read(layout: LayoutTarget) -> None:
    data = b"x" * cosign.MAX_PAYLOAD_BYTES
    digest = layout.push_blob_bytes(REPO, data)
    annotations = {cosign.SIGNATURE_ANNOTATION: "AAAA"}
    layer = Descriptor(cosign.SIMPLESIGNING_MEDIA_TYPE, digest, len(data), annotations=annotations)
    assert cosign.read_layer(layout, REPO, layer).payload == data


def test_log_entry_whose_key_is_no_certificate_is_refused(ca: SigningCA, log: SigningLog) -> None:
    signed = keyless_sign(ca, log, DIGEST, REF)
    assert signed.certificate is not None
    der = keyless.load_certificates(signed.certificate, "leaf")[0].public_bytes(Encoding.DER)
    body = tlog.hashedrekord_body(signed.signature, signed.payload, b"not a certificate")
    entry = tlog.LogEntry(body, 1, 1, keys.key_id(log.key))
    with pytest.raises(
        tlog.BundleError,
        match=exactly("log entry certificate differs from the signing certificate"),
    ):
        tlog.check_body(tlog.sign_entry(log.key, entry), signed.signature, signed.payload, der)
