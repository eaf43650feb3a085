"""The Verifier: public key, keyless and disabled policies over an OCI layout target."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from signing_testca import EPOCH, SigningCA, SigningLog, keyless_sign

from imagefactory.config import KeylessIdentity, Verification
from imagefactory.errors import BuildError, InvalidInput
from imagefactory.oci import media
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor, canonical_json
from imagefactory.signing import cosign, keyless, keys, payload, tlog
from imagefactory.signing.policy import Mode, SignatureError, Verifier

REPO = "siderolabs/imager"
REF = "ghcr.io/siderolabs/imager"


@pytest.fixture(scope="module")
def ca() -> SigningCA:
    return SigningCA.create()


@pytest.fixture(scope="module")
def log() -> SigningLog:
    return SigningLog.create()


def _keyless_verifier(ca: SigningCA, log: SigningLog, **identity: str) -> Verifier:
    return Verifier.keyless(keyless.Identity(**identity), [ca.root], log.key.public_key())


def test_public_key_accepts_and_reports(layout: LayoutTarget, image: Descriptor) -> None:
    key = keys.generate_key()
    cosign.sign_image(layout, REPO, image, key, REF + ":v1")
    verified = Verifier.with_public_key(key.public_key()).verify(layout, REPO, image.digest, REF)
    assert verified.mode is Mode.PUBLIC_KEY
    assert verified.image == f"{layout.name}/{REPO}@{image.digest}"
    assert verified.signer == f"key {keys.key_id(key)[:16]}"
    assert verified.layer_digest.startswith("sha256:")


def test_public_key_refusals_name_the_image(layout: LayoutTarget, image: Descriptor) -> None:
    key, other = keys.generate_key(), keys.generate_key()
    verifier = Verifier.with_public_key(key.public_key())
    with pytest.raises(SignatureError, match=rf"for {layout.name}/{REPO}@{image.digest}: no sig"):
        verifier.verify(layout, REPO, image.digest, REF)
    cosign.attach(layout, REPO, image.digest, cosign.sign(other, image.digest, REF))
    cosign.attach(layout, REPO, image.digest, cosign.sign(key, image.digest, "ghcr.io/x/y"))
    cosign.attach(layout, REPO, image.digest, cosign.sign(key, "sha256:" + "0" * 64, REF))
    with pytest.raises(SignatureError) as caught:
        verifier.verify(layout, REPO, image.digest, REF)
    message = str(caught.value)
    assert isinstance(caught.value, BuildError)
    assert "none of 3 signature(s) was accepted" in message
    assert "signature 1 (sha256:" in message and "does not verify over the payload" in message
    assert "identity is 'ghcr.io/x/y', not 'ghcr.io/siderolabs/imager'" in message
    assert "signs digest sha256:000" in message
    # one good layer among bad ones is enough
    cosign.attach(layout, REPO, image.digest, cosign.sign(key, image.digest, REF))
    assert verifier.verify(layout, REPO, image.digest, REF).digest == image.digest


def test_verify_refuses_bad_arguments(layout: LayoutTarget) -> None:
    verifier = Verifier.with_public_key(keys.generate_key().public_key())
    with pytest.raises(InvalidInput, match="not a sha256 digest"):
        verifier.verify(layout, REPO, "latest", REF)
    with pytest.raises(InvalidInput, match="not an image repository reference"):
        verifier.verify(layout, REPO, "sha256:" + "0" * 64, "Bad Ref")


def test_disabled_accepts_unsigned(layout: LayoutTarget, image: Descriptor) -> None:
    verified = Verifier.disabled().verify(layout, REPO, image.digest, REF)
    assert verified.mode is Mode.DISABLED and verified.signer == ""
    unsigned = cosign.Signature(b"not json", b"not a signature")
    assert Verifier.disabled().check(unsigned, image.digest, REF).signer == ""


def test_keyless_accepts(ca: SigningCA, log: SigningLog) -> None:
    digest = "sha256:" + "4" * 64
    signature = keyless_sign(ca, log, digest, REF)
    accepted = _keyless_verifier(ca, log).check(signature, digest, REF)
    assert accepted.signer == "releasemgr@siderolabs.com (https://accounts.google.com)"
    assert accepted.integrated_time == int((EPOCH + timedelta(minutes=1)).timestamp())


def test_keyless_end_to_end_in_layout(
    layout: LayoutTarget, image: Descriptor, ca: SigningCA, log: SigningLog
) -> None:
    cosign.attach(layout, REPO, image.digest, keyless_sign(ca, log, image.digest, REF))
    verified = _keyless_verifier(ca, log).verify(layout, REPO, image.digest, REF)
    assert verified.mode is Mode.KEYLESS and verified.integrated_time is not None


def _refusal(verifier: Verifier, signature: cosign.Signature, digest: str) -> str:
    # RejectedError and PayloadError are both ValueErrors; verify() collects them as reasons
    with pytest.raises(ValueError) as caught:
        verifier.check(signature, digest, REF)
    return str(caught.value)


DIGEST = "sha256:" + "5" * 64


def test_keyless_refuses_wrong_identity(ca: SigningCA, log: SigningLog) -> None:
    signature = keyless_sign(ca, log, DIGEST, REF, email="mallory@example.com")
    assert "subject mallory@example.com does not match" in _refusal(
        _keyless_verifier(ca, log), signature, DIGEST
    )


def test_keyless_refuses_wrong_issuer(ca: SigningCA, log: SigningLog) -> None:
    signature = keyless_sign(ca, log, DIGEST, REF, issuer="https://evil.example")
    assert "issuer 'https://evil.example' is not" in _refusal(
        _keyless_verifier(ca, log), signature, DIGEST
    )


def test_keyless_refuses_foreign_ca(ca: SigningCA, log: SigningLog) -> None:
    signature = keyless_sign(SigningCA.create("foreign"), log, DIGEST, REF)
    assert "does not chain to the trusted root" in _refusal(
        _keyless_verifier(ca, log), signature, DIGEST
    )


def test_keyless_refuses_bad_set(ca: SigningCA, log: SigningLog) -> None:
    signature = keyless_sign(ca, log, DIGEST, REF)
    assert signature.bundle is not None
    document = json.loads(signature.bundle)
    document["Payload"]["integratedTime"] += 1
    tampered = dataclasses.replace(signature, bundle=json.dumps(document))
    assert "SignedEntryTimestamp does not verify" in _refusal(
        _keyless_verifier(ca, log), tampered, DIGEST
    )
    other_log = SigningLog.create()
    assert "not the trusted log" in _refusal(_keyless_verifier(ca, other_log), signature, DIGEST)
    assert "no transparency log bundle" in _refusal(
        _keyless_verifier(ca, log), dataclasses.replace(signature, bundle=None), DIGEST
    )


def test_keyless_refuses_bundle_for_another_signature(ca: SigningCA, log: SigningLog) -> None:
    first = keyless_sign(ca, log, DIGEST, REF)
    second = keyless_sign(ca, log, DIGEST, REF)
    mixed = dataclasses.replace(second, bundle=first.bundle)
    assert "differs" in _refusal(_keyless_verifier(ca, log), mixed, DIGEST)


def test_keyless_refuses_cert_expired_at_integrated_time(ca: SigningCA, log: SigningLog) -> None:
    late = keyless_sign(ca, log, DIGEST, REF, signed_at=EPOCH + timedelta(minutes=30))
    assert "does not chain to the trusted root at 2026-01-01T00:30:00" in _refusal(
        _keyless_verifier(ca, log), late, DIGEST
    )


def test_keyless_refuses_key_signature_and_tampered_payload(ca: SigningCA, log: SigningLog) -> None:
    plain = cosign.sign(keys.generate_key(), DIGEST, REF)
    assert "no signing certificate" in _refusal(_keyless_verifier(ca, log), plain, DIGEST)
    signature = keyless_sign(ca, log, DIGEST, REF)
    tampered = dataclasses.replace(signature, payload=signature.payload.replace(b"5", b"6"))
    # the log entry records the payload hash, so tampering shows there first
    assert "hash does not match" in _refusal(_keyless_verifier(ca, log), tampered, DIGEST)


def test_keyless_without_log_key_checks_the_cert_now(ca: SigningCA, log: SigningLog) -> None:
    verifier = Verifier(
        Mode.KEYLESS,
        identity=keyless.Identity(),
        roots=[ca.root],
        now=lambda: EPOCH + timedelta(minutes=2),
    )
    signature = keyless_sign(ca, log, DIGEST, REF)
    assert verifier.check(signature, DIGEST, REF).integrated_time is None
    later = Verifier(
        Mode.KEYLESS,
        identity=keyless.Identity(),
        roots=[ca.root],
        now=lambda: EPOCH + timedelta(days=2),
    )
    assert "does not chain" in _refusal(later, signature, DIGEST)


def test_from_config(tmp_path: Path, ca: SigningCA, log: SigningLog) -> None:
    key = keys.generate_key()
    keys.save_public_key(key, tmp_path / "cosign.pub")
    assert Verifier.from_config(Verification(disabled=True)).mode is Mode.DISABLED
    by_key = Verifier.from_config(Verification(public_key=tmp_path / "cosign.pub"))
    assert by_key.mode is Mode.PUBLIC_KEY and by_key.public_key is not None
    assert keys.key_id(by_key.public_key) == keys.key_id(key)

    (tmp_path / "root.pem").write_bytes(ca.root.public_bytes(Encoding.PEM))
    keys.save_public_key(log.key, tmp_path / "rekor.pub")
    config = KeylessIdentity(
        issuer=keyless.DEFAULT_ISSUER,
        issuer_regexp="",
        subject_regexp=keyless.DEFAULT_SUBJECT_REGEXP,
        root_certificate=tmp_path / "root.pem",
        log_public_key=tmp_path / "rekor.pub",
    )
    verifier = Verifier.from_config(Verification(keyless=config))
    signature = keyless_sign(ca, log, DIGEST, REF)
    assert verifier.check(signature, DIGEST, REF).integrated_time is not None

    with pytest.raises(InvalidInput, match="needs publicKey, keyless or disabled"):
        Verifier.from_config(Verification())
    with pytest.raises(InvalidInput, match="cannot read root certificate"):
        Verifier.from_config(
            Verification(keyless=dataclasses.replace(config, root_certificate=tmp_path / "no"))
        )
    (tmp_path / "bad.pem").write_text("not a cert")
    with pytest.raises(InvalidInput, match=r"bad\.pem: not PEM certificates"):
        Verifier.from_config(
            Verification(keyless=dataclasses.replace(config, root_certificate=tmp_path / "bad.pem"))
        )
    with pytest.raises(InvalidInput, match="cannot read key file"):
        Verifier.from_config(Verification(public_key=tmp_path / "absent.pub"))


def test_constructor_refusals() -> None:
    with pytest.raises(InvalidInput, match="needs a public key"):
        Verifier(Mode.PUBLIC_KEY)
    with pytest.raises(InvalidInput, match="needs an identity and a root"):
        Verifier(Mode.KEYLESS, identity=keyless.Identity())


def test_bundle_module_used_by_fixture_matches_cosign_shape(ca: SigningCA, log: SigningLog) -> None:
    signature = keyless_sign(ca, log, DIGEST, REF)
    assert signature.bundle is not None
    assert tlog.Bundle.parse(signature.bundle).entry.log_id == keys.key_id(log.key)


def test_malformed_signature_manifest_is_a_signature_error(
    layout: LayoutTarget, image: Descriptor
) -> None:
    config = layout.push_blob_bytes(REPO, b"{}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": {"mediaType": media.OCI_CONFIG, "digest": config, "size": 2},
        "layers": {"not": "a list"},
    }
    tag = cosign.signature_tag(image.digest)
    layout.put_manifest(REPO, canonical_json(manifest), media.OCI_MANIFEST, tag=tag)
    verifier = Verifier.with_public_key(keys.generate_key().public_key())
    with pytest.raises(
        SignatureError, match=rf"{image.digest}: .*{tag}: signature manifest has no"
    ):
        verifier.verify(layout, REPO, image.digest, REF)


def _logged_as_is(
    log: SigningLog, signature: cosign.Signature, *, payload: bytes, signature_bytes: bytes
) -> cosign.Signature:
    """The same valid certificate, with a payload or signature the log recorded faithfully."""
    assert signature.certificate is not None
    cert = x509.load_pem_x509_certificate(signature.certificate)
    bundle = log.bundle(
        signature_bytes, payload, cert, int((EPOCH + timedelta(minutes=1)).timestamp())
    )
    return dataclasses.replace(
        signature, payload=payload, signature=signature_bytes, bundle=bundle.to_json()
    )


def test_keyless_refuses_valid_cert_with_signature_that_does_not_verify(
    ca: SigningCA, log: SigningLog
) -> None:
    verifier = _keyless_verifier(ca, log)
    signature = keyless_sign(ca, log, DIGEST, REF)
    assert verifier.check(signature, DIGEST, REF).signer  # certificate and identity are good
    # Another key's signature over the same payload: well-formed DER, wrong signer.
    foreign = cosign.sign(keys.generate_key(), DIGEST, REF).signature
    # The same claims with one more byte of JSON whitespace: the ephemeral key never signed it.
    padded = signature.payload + b"\n"
    assert payload.decode(padded) == payload.decode(signature.payload)
    for bad in (
        _logged_as_is(log, signature, payload=signature.payload, signature_bytes=foreign),
        _logged_as_is(log, signature, payload=padded, signature_bytes=signature.signature),
    ):
        assert _refusal(verifier, bad, DIGEST) == "signature does not verify over the payload"


def test_keyless_without_log_refuses_signature_that_does_not_verify(
    ca: SigningCA, log: SigningLog
) -> None:
    verifier = Verifier(
        Mode.KEYLESS,
        identity=keyless.Identity(),
        roots=[ca.root],
        now=lambda: EPOCH + timedelta(minutes=2),
    )
    signature = keyless_sign(ca, log, DIGEST, REF)
    assert verifier.check(signature, DIGEST, REF).integrated_time is None
    flipped = bytearray(signature.signature)
    flipped[-1] ^= 1
    bad = dataclasses.replace(signature, signature=bytes(flipped))
    assert _refusal(verifier, bad, DIGEST) == "signature does not verify over the payload"
