"""Expected PCR 11 values of a UKI and their signed TPM2 PolicyPCR digests (the `.pcrsig` JSON).

Same method as systemd-measure and upstream's internal/pkg/measure: sections in a fixed order, then
the boot phases; only the `enter-machined` phase is signed, in the SHA-256/384/512 banks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from imagefactory.errors import InvalidInput

UKI_PCR = 11
# systemd's measurement order; never rearrange.
MEASURED_SECTIONS = (
    ".linux",
    ".osrel",
    ".cmdline",
    ".initrd",
    ".ucode",
    ".splash",
    ".dtb",
    ".uname",
    ".sbat",
    ".pcrpkey",
    ".profile",
    ".dtbauto",
    ".hwids",
)
# (phase, signed?) in the order Talos extends them.
PHASES = (("enter-initrd", False), ("leave-initrd", False), ("enter-machined", True))
BANKS: tuple[tuple[str, int, hashes.HashAlgorithm], ...] = (
    ("sha256", 0x000B, hashes.SHA256()),
    ("sha384", 0x000C, hashes.SHA384()),
    ("sha512", 0x000D, hashes.SHA512()),
)
TPM_CC_POLICY_PCR = 0x0000017F


@dataclass(frozen=True)
class BankSignature:
    pcrs: tuple[int, ...]
    pkfp: str
    pol: str
    sig: str


def load_rsa_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise InvalidInput(
            f"PCR signing key {path}: cannot read a PEM private key: {exc}"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidInput(f"PCR signing key {path}: must be an RSA key")
    return key


def public_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The `.pcrpkey` section: PEM "PUBLIC KEY" (PKIX)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _extend(pcr: bytes, data: bytes, algorithm: str) -> bytes:
    return hashlib.new(algorithm, pcr + hashlib.new(algorithm, data).digest()).digest()


def pcr_values(sections: Mapping[str, bytes], algorithm: str) -> dict[str, bytes]:
    """PCR 11 after each phase, starting from zero and measuring the sections present."""
    unknown = set(sections) - set(MEASURED_SECTIONS)
    if unknown:
        raise InvalidInput(f"sections not measured into PCR 11: {sorted(unknown)}")
    pcr = bytes(hashlib.new(algorithm).digest_size)
    for name in MEASURED_SECTIONS:
        if name in sections:
            pcr = _extend(pcr, name.encode() + b"\0", algorithm)
            pcr = _extend(pcr, sections[name], algorithm)
    values = {}
    for phase, _ in PHASES:
        pcr = _extend(pcr, phase.encode(), algorithm)
        values[phase] = pcr
    return values


def policy_pcr_digest(pcr_value: bytes, tpm_alg: int) -> bytes:
    """TPM2_PolicyPCR digest (SHA-256 session) for PCR 11 of one bank, from an empty policy."""
    mask = bytearray(3)
    mask[UKI_PCR >> 3] |= 1 << (UKI_PCR & 7)
    # TPML_PCR_SELECTION with one TPMS_PCR_SELECTION: count, hash algorithm, sizeofSelect, bitmap.
    selection = struct.pack(">IHB", 1, tpm_alg, len(mask)) + bytes(mask)
    pcr_digest = hashlib.sha256(pcr_value).digest()
    return hashlib.sha256(
        bytes(32) + struct.pack(">I", TPM_CC_POLICY_PCR) + selection + pcr_digest
    ).digest()


def sign(sections: Mapping[str, bytes], key: rsa.RSAPrivateKey) -> dict[str, list[BankSignature]]:
    """Signed policies per bank for every signed phase."""
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    fingerprint = hashlib.sha256(public_der).hexdigest()
    result: dict[str, list[BankSignature]] = {}
    for bank, tpm_alg, hash_algorithm in BANKS:
        values = pcr_values(sections, bank)
        result[bank] = []
        for phase, signed in PHASES:
            if not signed:
                continue
            policy = policy_pcr_digest(values[phase], tpm_alg)
            digest = hashlib.new(bank, policy).digest()
            signature = key.sign(digest, padding.PKCS1v15(), Prehashed(hash_algorithm))
            result[bank].append(
                BankSignature(
                    (UKI_PCR,), fingerprint, policy.hex(), base64.b64encode(signature).decode()
                )
            )
    return result


def pcrsig_json(sections: Mapping[str, bytes], key: rsa.RSAPrivateKey) -> bytes:
    """The `.pcrsig` section bytes, compact JSON in Go's field order."""
    document = {
        bank: [{"pcrs": list(s.pcrs), "pkfp": s.pkfp, "pol": s.pol, "sig": s.sig} for s in sigs]
        for bank, sigs in sign(sections, key).items()
    }
    return json.dumps(document, separators=(",", ":")).encode()
