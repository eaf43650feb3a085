"""ECDSA keys for cosign-style signatures: generate, load and save PEM files.

Signing keys are P-256 (what `cosign generate-key-pair` makes); verification accepts any ECDSA key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imagefactory.errors import InvalidInput
from imagefactory.files import write_atomic

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey

# cosign's own password-encrypted format (scrypt + secretbox) is not PKCS#8; name it in the error.
COSIGN_ENCRYPTED_MARKER = b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
COSIGN_ENCRYPTED_MARKER_OLD = b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----"


def generate_key() -> PrivateKey:
    """A new ECDSA P-256 signing key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_from_pem(data: bytes, source: str, password: bytes | None = None) -> PrivateKey:
    """Parse an ECDSA P-256 private key (PKCS#8 or SEC1 PEM); `source` names it in errors."""
    if COSIGN_ENCRYPTED_MARKER in data or COSIGN_ENCRYPTED_MARKER_OLD in data:
        raise InvalidInput(
            f"{source}: cosign-encrypted private keys are not supported; export an unencrypted "
            "PKCS#8 PEM (e.g. `openssl pkcs8 -topk8 -nocrypt`)"
        )
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"{source}: not a PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInput(f"{source}: signing key must be ECDSA P-256")
    return key


def public_key_from_pem(data: bytes, source: str) -> PublicKey:
    """Parse an ECDSA public key ("PUBLIC KEY" PEM, as cosign.pub); `source` names it in errors."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"{source}: not a PEM public key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidInput(f"{source}: public key must be ECDSA")
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read key file {path}: {exc.strerror}") from exc


def load_private_key(path: Path, password: bytes | None = None) -> PrivateKey:
    return private_key_from_pem(_read(path), str(path), password)


def load_public_key(path: Path) -> PublicKey:
    return public_key_from_pem(_read(path), str(path))


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM ("PRIVATE KEY")."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: PrivateKey | PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM ("PUBLIC KEY"), the format of cosign.pub."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: PrivateKey | PublicKey) -> str:
    """Hex sha256 of the DER SubjectPublicKeyInfo (also how a transparency log ID is formed)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def save_private_key(key: PrivateKey, path: Path) -> None:
    """Write the key readable by its owner only (temp name, then rename)."""
    write_atomic(path, private_key_pem(key), 0o600)


def save_public_key(key: PrivateKey | PublicKey, path: Path) -> None:
    write_atomic(path, public_key_pem(key), 0o644)
