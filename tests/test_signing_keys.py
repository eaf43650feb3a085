"""Signing keys: generate, save, load, public key PEM, and refusal of the wrong kinds of keys."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from imagefactory.errors import InvalidInput
from imagefactory.signing import keys


def test_generate_save_load_round_trip(tmp_path: Path) -> None:
    key = keys.generate_key()
    keys.save_private_key(key, tmp_path / "cosign.key")
    keys.save_public_key(key, tmp_path / "cosign.pub")
    assert stat.S_IMODE((tmp_path / "cosign.key").stat().st_mode) == 0o600
    assert (tmp_path / "cosign.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert (tmp_path / "cosign.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = keys.load_private_key(tmp_path / "cosign.key")
    public = keys.load_public_key(tmp_path / "cosign.pub")
    signature = loaded.sign(b"data", ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(signature, b"data", ec.ECDSA(hashes.SHA256()))
    public.verify(signature, b"data", ec.ECDSA(hashes.SHA256()))
    assert keys.key_id(key) == keys.key_id(public)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_sec1_pem_and_password_are_accepted(tmp_path: Path) -> None:
    key = keys.generate_key()
    sec1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"pw"),
    )
    loaded = keys.private_key_from_pem(sec1, "k", password=b"pw")
    assert keys.key_id(loaded) == keys.key_id(key)


def _pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "k: not a PEM private key"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a PEM private key",
        ),
        (
            b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJr\n"
            b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            "cosign-encrypted private keys are not supported",
        ),
        (_pem(ec.generate_private_key(ec.SECP384R1())), "must be ECDSA P-256"),
        (_pem(ed25519.Ed25519PrivateKey.generate()), "must be ECDSA P-256"),
        (_pem(rsa.generate_private_key(65537, 2048)), "must be ECDSA P-256"),
    ],
)
def test_private_key_refusals(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        keys.private_key_from_pem(data, "k")


def test_encrypted_key_without_password_is_refused() -> None:
    pem = keys.generate_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(InvalidInput, match="k: not a PEM private key"):
        keys.private_key_from_pem(pem, "k")


def test_public_key_refusals(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"cannot read key file .*missing\.pub"):
        keys.load_public_key(tmp_path / "missing.pub")
    with pytest.raises(InvalidInput, match="p: not a PEM public key"):
        keys.public_key_from_pem(b"garbage", "p")
    rsa_pub = (
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InvalidInput, match="p: public key must be ECDSA"):
        keys.public_key_from_pem(rsa_pub, "p")
