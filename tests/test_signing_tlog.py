"""Transparency-log bundles: SET over canonical JSON, body matching, and malformed bundles."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st
from signing_testca import SigningCA

from imagefactory.signing import keys, tlog

PAYLOAD = b'{"critical":{}}'


def test_signed_message_is_rfc8785_canonical() -> None:
    entry = tlog.LogEntry("Ym9keQ==", 1700000000, 42, "ab" * 32)
    assert entry.signed_message() == (
        b'{"body":"Ym9keQ==","integratedTime":1700000000,"logID":"'
        + b"ab" * 32
        + b'","logIndex":42}'
    )


def test_bundle_json_is_cosigns_shape_and_round_trips() -> None:
    log_key = ec.generate_private_key(ec.SECP256R1())
    bundle = tlog.sign_entry(log_key, tlog.LogEntry("Ym9keQ==", 1, 2, keys.key_id(log_key)))
    text = bundle.to_json()
    document = json.loads(text)
    assert list(document) == ["SignedEntryTimestamp", "Payload"]
    assert list(document["Payload"]) == ["body", "integratedTime", "logIndex", "logID"]
    assert tlog.Bundle.parse(text) == bundle
    tlog.verify_set(bundle, log_key.public_key())


@given(
    body=st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    integrated=st.integers(min_value=0, max_value=2**40),
    index=st.integers(min_value=0, max_value=2**40),
)
def test_bundle_round_trip_property(body: str, integrated: int, index: int) -> None:
    bundle = tlog.Bundle(b"\x30\x00", tlog.LogEntry(body, integrated, index, "00" * 32))
    assert tlog.Bundle.parse(bundle.to_json()) == bundle


@given(st.text(max_size=100))
def test_parse_never_crashes(text: str) -> None:
    try:
        bundle = tlog.Bundle.parse(text)
    except tlog.BundleError as exc:
        assert str(exc)  # a reason, never an empty message
        return
    # Whatever parses is a bundle that survives its own serialisation unchanged.
    assert tlog.Bundle.parse(bundle.to_json()) == bundle


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "no Payload object"),
        ('{"Payload": {"body": 1, "logID": "x", "integratedTime": 1, "logIndex": 1}}', "strings"),
        ('{"Payload": {"body": "", "logID": "x", "integratedTime": -1, "logIndex": 1}}', "integ"),
        ('{"Payload": {"body": "", "logID": "x", "integratedTime": 1, "logIndex": true}}', "logIn"),
        ('{"Payload": {"body": "", "logID": "x", "integratedTime": 1, "logIndex": 1}}', "no Sign"),
        (
            '{"SignedEntryTimestamp": "!!", "Payload": '
            '{"body": "", "logID": "x", "integratedTime": 1, "logIndex": 1}}',
            "not base64",
        ),
    ],
)
def test_parse_refuses_malformed(text: str, message: str) -> None:
    with pytest.raises(tlog.BundleError, match=message):
        tlog.Bundle.parse(text)


def test_set_refused_for_other_log_or_tampered_entry() -> None:
    log_key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    bundle = tlog.sign_entry(log_key, tlog.LogEntry("Ym9keQ==", 10, 2, keys.key_id(log_key)))
    with pytest.raises(tlog.BundleError, match="not the trusted log"):
        tlog.verify_set(bundle, other.public_key())
    moved = tlog.Bundle(
        bundle.signed_entry_timestamp, tlog.LogEntry("Ym9keQ==", 11, 2, keys.key_id(log_key))
    )
    with pytest.raises(tlog.BundleError, match="does not verify with the log key"):
        tlog.verify_set(moved, log_key.public_key())
    # A SET made by another key but claiming the trusted log's ID
    forged = tlog.Bundle(
        other.sign(bundle.entry.signed_message(), ec.ECDSA(hashes.SHA256())), bundle.entry
    )
    with pytest.raises(tlog.BundleError, match="does not verify"):
        tlog.verify_set(forged, log_key.public_key())


def _body_bundle(signature: bytes, payload: bytes, cert_pem: bytes) -> tlog.Bundle:
    body = tlog.hashedrekord_body(signature, payload, cert_pem)
    return tlog.Bundle(b"", tlog.LogEntry(body, 1, 1, "00"))


def test_body_is_hashedrekord_and_checked() -> None:
    ca = SigningCA.create()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(key)
    pem, der = cert.public_bytes(Encoding.PEM), cert.public_bytes(Encoding.DER)
    signature = key.sign(PAYLOAD, ec.ECDSA(hashes.SHA256()))
    bundle = _body_bundle(signature, PAYLOAD, pem)
    entry = json.loads(base64.b64decode(bundle.entry.body))
    assert entry["kind"] == "hashedrekord" and entry["apiVersion"] == "0.0.1"
    assert entry["spec"]["data"]["hash"]["value"] == hashlib.sha256(PAYLOAD).hexdigest()
    tlog.check_body(bundle, signature, PAYLOAD, der)

    with pytest.raises(tlog.BundleError, match="hash does not match"):
        tlog.check_body(bundle, signature, PAYLOAD + b" ", der)
    with pytest.raises(tlog.BundleError, match="signature differs"):
        tlog.check_body(bundle, signature[:-1] + b"\x00", PAYLOAD, der)
    other = ca.issue(key, email="someone@else.org").public_bytes(Encoding.DER)
    with pytest.raises(tlog.BundleError, match="certificate differs"):
        tlog.check_body(bundle, signature, PAYLOAD, other)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "rekord"}, "kind 'rekord' is not supported"),
        ({"kind": "hashedrekord"}, "no spec.data.hash.algorithm"),
        (
            {
                "kind": "hashedrekord",
                "spec": {"data": {"hash": {"algorithm": "sha512", "value": ""}}},
            },
            "hash does not match",
        ),
    ],
)
def test_body_refusals(entry: dict[str, object], message: str) -> None:
    body = base64.b64encode(json.dumps(entry).encode()).decode()
    bundle = tlog.Bundle(b"", tlog.LogEntry(body, 1, 1, "00"))
    with pytest.raises(tlog.BundleError, match=message):
        tlog.check_body(bundle, b"sig", PAYLOAD, b"der")


def test_body_not_json() -> None:
    bundle = tlog.Bundle(b"", tlog.LogEntry(base64.b64encode(b"{").decode(), 1, 1, "00"))
    with pytest.raises(tlog.BundleError, match="body is not JSON"):
        tlog.check_body(bundle, b"sig", PAYLOAD, b"der")
