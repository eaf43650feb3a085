"""A throwaway Fulcio-like CA and transparency log for keyless signing tests.

Root and intermediate as Fulcio issues them (P-384, code-signing EKU on the intermediate), short-lived
leaf certificates with an email SAN and the OIDC issuer extensions, and SET-signed log bundles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from imagefactory.signing import cosign, keyless, keys, tlog

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imagefactory-test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, path_length: int | None
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(EPOCH - timedelta(days=365))
        .not_valid_after(EPOCH + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _der_utf8(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 128
    return bytes([0x0C, len(data)]) + data


@dataclass(frozen=True)
class SigningCA:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate

    @classmethod
    def create(
        cls, name: str = "test", intermediate_eku: x509.ObjectIdentifier | None = None
    ) -> SigningCA:
        root_key = ec.generate_private_key(ec.SECP384R1())
        root = _ca_builder(_name(f"{name} root"), _name(f"{name} root"), root_key, None).sign(
            root_key, hashes.SHA384()
        )
        inter_key = ec.generate_private_key(ec.SECP384R1())
        intermediate = (
            _ca_builder(_name(f"{name} intermediate"), root.subject, inter_key, 0)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([intermediate_eku or ExtendedKeyUsageOID.CODE_SIGNING]),
                critical=False,
            )
            .sign(root_key, hashes.SHA384())
        )
        return cls(root_key, root, inter_key, intermediate)

    def chain_pem(self) -> bytes:
        return self.intermediate.public_bytes(Encoding.PEM) + self.root.public_bytes(Encoding.PEM)

    def issue(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        email: str = "releasemgr@siderolabs.com",
        uri: str | None = None,
        issuer: str = keyless.DEFAULT_ISSUER,
        not_before: datetime = EPOCH,
        lifetime: timedelta = timedelta(minutes=10),
        issuer_v1: bool = True,
        issuer_v2: bool = True,
        code_signing: bool = True,
    ) -> x509.Certificate:
        """A Fulcio-style leaf: empty subject, critical email (or URI) SAN, issuer extensions."""
        eku = ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + lifetime)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(uri) if uri else x509.RFC822Name(email)]
                ),
                critical=True,
            )
        )
        if issuer_v1:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(keyless.OID_ISSUER_V1, issuer.encode()), critical=False
            )
        if issuer_v2:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(keyless.OID_ISSUER_V2, _der_utf8(issuer)),
                critical=False,
            )
        return builder.sign(self.intermediate_key, hashes.SHA384())


@dataclass(frozen=True)
class SigningLog:
    key: ec.EllipticCurvePrivateKey
    next_index: int = 1000

    @classmethod
    def create(cls) -> SigningLog:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def bundle(
        self, signature: bytes, payload: bytes, cert: x509.Certificate, integrated_time: int
    ) -> tlog.Bundle:
        body = tlog.hashedrekord_body(signature, payload, cert.public_bytes(Encoding.PEM))
        entry = tlog.LogEntry(body, integrated_time, self.next_index, keys.key_id(self.key))
        return tlog.sign_entry(self.key, entry)


def keyless_sign(
    ca: SigningCA,
    log: SigningLog,
    digest: str,
    docker_reference: str,
    *,
    signed_at: datetime = EPOCH + timedelta(minutes=1),
    **issue_options: object,
) -> cosign.Signature:
    """Sign as cosign does keylessly: ephemeral key, leaf cert, logged at `signed_at`."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(key, **issue_options)  # type: ignore[arg-type]
    base = cosign.sign(key, digest, docker_reference)
    bundle = log.bundle(base.signature, base.payload, cert, int(signed_at.timestamp()))
    return dataclasses.replace(
        base,
        certificate=cert.public_bytes(Encoding.PEM),
        chain=ca.chain_pem(),
        bundle=bundle.to_json(),
    )
