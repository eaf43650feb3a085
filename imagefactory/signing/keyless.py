"""Keyless (Fulcio-style) signing certificates: chain to a trusted root, then match the identity.

The identity is the OIDC issuer from Fulcio's extension and the subject from the SAN, as cosign reads them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from imagefactory.errors import InvalidInput
from imagefactory.signing.identity import DEFAULT_ISSUER, DEFAULT_SUBJECT_REGEXP

# Fulcio's OIDC issuer: v1 holds the raw URL bytes, v2 a DER UTF8String (cosign prefers v2).
OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
DER_UTF8STRING = 0x0C


class CertificateError(ValueError):
    """The certificate is malformed, untrusted or of the wrong identity; the message says why."""


@dataclass(frozen=True)
class Identity:
    """Whom to trust: exact issuer and/or issuer regexp, and a subject regexp (Go-style search)."""

    issuer: str = DEFAULT_ISSUER
    subject_regexp: str = DEFAULT_SUBJECT_REGEXP
    issuer_regexp: str = ""

    def __post_init__(self) -> None:
        if not self.issuer and not self.issuer_regexp:
            raise InvalidInput("keyless identity needs an issuer or an issuer regexp")
        for name, pattern in (
            ("subject regexp", self.subject_regexp),
            ("issuer regexp", self.issuer_regexp),
        ):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidInput(f"keyless {name} {pattern!r} is invalid: {exc}") from exc


@dataclass(frozen=True)
class CertIdentity:
    issuer: str
    subjects: tuple[str, ...]


def load_certificates(pem: bytes, source: str) -> list[x509.Certificate]:
    """All certificates of a PEM bundle; `source` names it in errors."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateError(f"{source}: not PEM certificates ({exc})") from exc
    return certs


def _der_utf8(value: bytes) -> str:
    if len(value) < 2 or value[0] != DER_UTF8STRING:
        raise CertificateError("issuer extension is not a DER UTF8String")
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(value) < 2 + count:
            raise CertificateError("issuer extension has a bad DER length")
        length = int.from_bytes(value[2 : 2 + count], "big")
        offset = 2 + count
    if len(value) != offset + length:
        raise CertificateError("issuer extension has a bad DER length")
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CertificateError("issuer extension is not UTF-8") from exc


def certificate_issuer(cert: x509.Certificate) -> str:
    """The OIDC issuer Fulcio recorded in the certificate."""
    for oid, decode in ((OID_ISSUER_V2, _der_utf8), (OID_ISSUER_V1, _raw_utf8)):
        try:
            extension = cert.extensions.get_extension_for_oid(oid)
        except x509.ExtensionNotFound:
            continue
        value = extension.value
        if isinstance(value, x509.UnrecognizedExtension):
            return decode(value.value)
    raise CertificateError("certificate has no Fulcio OIDC issuer extension")


def _raw_utf8(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CertificateError("issuer extension is not UTF-8") from exc


def certificate_subjects(cert: x509.Certificate) -> tuple[str, ...]:
    """The SAN emails, URIs and DNS names, in that order."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError("certificate has no subject alternative name") from exc
    return (
        *san.get_values_for_type(x509.RFC822Name),
        *san.get_values_for_type(x509.UniformResourceIdentifier),
        *san.get_values_for_type(x509.DNSName),
    )


def _require_code_signing(
    _policy: Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage
) -> None:
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise ValueError("leaf certificate is not for code signing")


def _ca_allows_code_signing(
    _policy: Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
) -> None:
    # The client verifier's own CA check wants clientAuth; Fulcio intermediates carry codeSigning.
    if eku is not None and not (
        ExtendedKeyUsageOID.CODE_SIGNING in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    ):
        raise ValueError("CA certificate does not allow code signing")


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime,
) -> None:
    """Raise CertificateError unless `leaf` chains to one of `roots` and all are valid at `at`."""
    if not roots:
        raise CertificateError("no trusted root certificate configured")
    ee_policy = ExtensionPolicy.permit_all().require_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _require_code_signing
    )
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _ca_allows_code_signing
    )
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, list(intermediates))
    except VerificationError as exc:
        raise CertificateError(
            f"certificate does not chain to the trusted root at {at.isoformat()}: {exc}"
        ) from exc


def match_identity(cert: x509.Certificate, identity: Identity) -> CertIdentity:
    """Raise CertificateError unless the certificate's issuer and a subject match `identity`."""
    issuer = certificate_issuer(cert)
    if identity.issuer and issuer != identity.issuer:
        raise CertificateError(f"certificate issuer {issuer!r} is not {identity.issuer!r}")
    if identity.issuer_regexp and not re.search(identity.issuer_regexp, issuer):
        raise CertificateError(
            f"certificate issuer {issuer!r} does not match {identity.issuer_regexp!r}"
        )
    subjects = certificate_subjects(cert)
    if not any(re.search(identity.subject_regexp, subject) for subject in subjects):
        raise CertificateError(
            f"certificate subject {', '.join(subjects) or '(none)'} does not match "
            f"{identity.subject_regexp!r}"
        )
    return CertIdentity(issuer, subjects)
