"""The sample's own keys, so the README's run builds and signs everything: plainly sample keys.

Secure Boot: a PK and a KEK (self-signed), the db signing key and certificate that sign UKIs and
systemd-boot, the PCR policy key, and PK/KEK/db `.auth` updates (PK by PK, KEK by PK, db by KEK) for
ISOs to enroll. Publishing: the ECDSA P-256 key that signs published files and registry entries.
Made once and kept across runs; never use them for anything real.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from imagefactory import tools
from imagefactory.files import write_atomic
from imagefactory.signing import keys

KEYS_DIR = "keys"
# The certificates' validity starts here, so remade keys differ only in key material.
NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2049, 12, 31, tzinfo=datetime.UTC)
# The .auth updates' timestamp (sign-efi-sig-list -t): fixed, for reproducible files.
AUTH_TIMESTAMP = "2024-01-01 00:00:00"
OWNER_GUID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "sample.imagefactory.invalid"))


@dataclass(frozen=True)
class SampleKeys:
    """Paths relative to the sample directory, as its config names them."""

    publish_key: str
    signing_key: str
    signing_cert: str
    pcr_key: str
    pk_auth: str
    kek_auth: str
    db_auth: str

    def secureboot_config(self) -> dict[str, str]:
        return {
            "signingKeyPath": self.signing_key,
            "signingCertPath": self.signing_cert,
            "pcrKeyPath": self.pcr_key,
            "platformKeyPath": self.pk_auth,
            "keyExchangeKeyPath": self.kek_auth,
            "signatureKeyPath": self.db_auth,
        }


def _rsa_key(path: Path) -> rsa.RSAPrivateKey:
    if path.is_file():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        return loaded
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, mode=0o600)
    return key


def _certificate(path: Path, key: rsa.RSAPrivateKey, common_name: str) -> None:
    if path.is_file():
        return
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(key.public_key().public_numbers().n.to_bytes(256)[:8]) >> 1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM))


def _pair(directory: Path, stem: str, common_name: str) -> tuple[Path, Path]:
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.pem"
    _certificate(cert_path, _rsa_key(key_path), common_name)
    return key_path, cert_path


def _auth(directory: Path, variable: str, cert: Path, signer: tuple[Path, Path]) -> Path:
    """`<variable>.auth`: an EFI signature list of `cert`, signed by `signer` (key, cert)."""
    out = directory / f"sample-{variable}.auth"
    if out.is_file():
        return out
    esl = directory / f".{variable}.esl"
    tools.run(["cert-to-efi-sig-list", "-g", OWNER_GUID, cert, esl])
    # fmt: off
    tools.run([
        "sign-efi-sig-list",
        "-g", OWNER_GUID,
        "-t", AUTH_TIMESTAMP,
        "-k", signer[0],
        "-c", signer[1],
        variable,
        esl,
        out,
    ], env={"TZ": "UTC"})
    # fmt: on
    esl.unlink()
    return out


def make_sample_keys(out: Path) -> SampleKeys:
    """Every sample key under out/keys/ (made once); paths relative to `out`."""
    directory = out / KEYS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    label = "Image Factory SAMPLE {} (not for production)"
    pk = _pair(directory, "sample-PK", label.format("Platform Key"))
    kek = _pair(directory, "sample-KEK", label.format("Key Exchange Key"))
    db_key, db_cert = _pair(directory, "sample-db-signing", label.format("db signing key"))
    pcr = directory / "sample-pcr-signing.key"
    _rsa_key(pcr)
    publish = directory / "sample-publish-signing.key"
    if not publish.is_file():
        keys.save_private_key(keys.generate_key(), publish)
    pk_auth = _auth(directory, "PK", pk[1], pk)
    kek_auth = _auth(directory, "KEK", kek[1], pk)
    db_auth = _auth(directory, "db", db_cert, kek)

    def rel(path: Path) -> str:
        return str(path.relative_to(out))

    return SampleKeys(
        publish_key=rel(publish),
        signing_key=rel(db_key),
        signing_cert=rel(db_cert),
        pcr_key=rel(pcr),
        pk_auth=rel(pk_auth),
        kek_auth=rel(kek_auth),
        db_auth=rel(db_auth),
    )
