"""Transparency-log bundles as cosign stores them (`dev.sigstore.cosign/bundle` annotation).

Checks the log's signed entry timestamp offline and that the logged entry is this signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from imagefactory.signing.keys import key_id


class BundleError(ValueError):
    """The bundle is malformed or does not vouch for this signature; the message says why."""


@dataclass(frozen=True)
class LogEntry:
    """What the log signed: the entry body (base64 JSON), when and where it was logged."""

    body: str
    integrated_time: int
    log_index: int
    log_id: str

    def signed_message(self) -> bytes:
        # RFC 8785 canonical JSON: sorted keys, no spaces; the values here are ASCII and integers.
        return json.dumps(
            {
                "body": self.body,
                "integratedTime": self.integrated_time,
                "logID": self.log_id,
                "logIndex": self.log_index,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True)
class Bundle:
    signed_entry_timestamp: bytes
    entry: LogEntry

    def to_json(self) -> str:
        """The annotation value, fields in cosign's order."""
        return json.dumps(
            {
                "SignedEntryTimestamp": base64.b64encode(self.signed_entry_timestamp).decode(),
                "Payload": {
                    "body": self.entry.body,
                    "integratedTime": self.entry.integrated_time,
                    "logIndex": self.entry.log_index,
                    "logID": self.entry.log_id,
                },
            },
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, text: str) -> Bundle:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise BundleError(f"bundle is not JSON: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("Payload"), dict):
            raise BundleError("bundle has no Payload object")
        payload = document["Payload"]
        body = payload.get("body")
        log_id = payload.get("logID")
        if not isinstance(body, str) or not isinstance(log_id, str):
            raise BundleError("bundle Payload.body and Payload.logID must be strings")
        integrated = _count(payload, "integratedTime")
        index = _count(payload, "logIndex")
        set_b64 = document.get("SignedEntryTimestamp")
        if not isinstance(set_b64, str):
            raise BundleError("bundle has no SignedEntryTimestamp")
        return cls(_b64(set_b64, "SignedEntryTimestamp"), LogEntry(body, integrated, index, log_id))


def _count(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BundleError(f"bundle Payload.{name} must be a non-negative integer")
    return value


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleError(f"{what} is not base64") from exc


def hashedrekord_body(signature: bytes, payload: bytes, verifier_pem: bytes) -> str:
    """The base64 body of a Rekor `hashedrekord` 0.0.1 entry for this signature."""
    entry = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {
                "content": base64.b64encode(signature).decode(),
                "publicKey": {"content": base64.b64encode(verifier_pem).decode()},
            },
        },
    }
    return base64.b64encode(json.dumps(entry, separators=(",", ":")).encode()).decode()


def sign_entry(log_key: ec.EllipticCurvePrivateKey, entry: LogEntry) -> Bundle:
    """What a log returns on upload: the entry with its signed entry timestamp."""
    return Bundle(log_key.sign(entry.signed_message(), ec.ECDSA(hashes.SHA256())), entry)


def verify_set(bundle: Bundle, log_key: ec.EllipticCurvePublicKey) -> None:
    """Raise BundleError unless the configured log signed this entry."""
    expected = key_id(log_key)
    if bundle.entry.log_id != expected:
        raise BundleError(
            f"bundle is from log {bundle.entry.log_id}, not the trusted log {expected}"
        )
    try:
        log_key.verify(
            bundle.signed_entry_timestamp, bundle.entry.signed_message(), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature as exc:
        raise BundleError("bundle SignedEntryTimestamp does not verify with the log key") from exc


def _path(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            raise BundleError(f"log entry has no {'.'.join(keys)}")
        obj = obj[key]
    return obj


def check_body(bundle: Bundle, signature: bytes, payload: bytes, verifier_der: bytes) -> None:
    """Raise BundleError unless the logged entry records this signature, payload and signer.

    `verifier_der` is the DER of the signing certificate (PEM in the entry is compared as DER).
    """
    try:
        entry = json.loads(_b64(bundle.entry.body, "bundle body"))
    except ValueError as exc:
        raise BundleError(f"bundle body is not JSON: {exc}") from exc
    kind = _path(entry, "kind")
    if kind != "hashedrekord":
        raise BundleError(f"log entry kind {kind!r} is not supported (only hashedrekord)")
    algorithm = _path(entry, "spec", "data", "hash", "algorithm")
    value = _path(entry, "spec", "data", "hash", "value")
    if algorithm != "sha256" or value != hashlib.sha256(payload).hexdigest():
        raise BundleError("log entry hash does not match the signed payload")
    content = _path(entry, "spec", "signature", "content")
    if not isinstance(content, str) or _b64(content, "log entry signature") != signature:
        raise BundleError("log entry signature differs from the image signature")
    signer = _path(entry, "spec", "signature", "publicKey", "content")
    if not isinstance(signer, str) or not _same_certificate(
        _b64(signer, "log entry key"), verifier_der
    ):
        raise BundleError("log entry certificate differs from the signing certificate")


def _same_certificate(pem: bytes, der: bytes) -> bool:
    try:
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER) == der
    except ValueError:
        return False
