"""Expected PCR 11 values of a UKI and their signed TPM2 PolicyPCR digests (the `.pcrsig` JSON).

Same method as systemd-measure and upstream's internal/pkg/measure: sections in a fixed order, then
the boot phases; only the `enter-machined` phase is signed, in the SHA-256/384/512 banks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from imagefactory.errors import InvalidInput
from imagefactory.files import write_atomic

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
BANK_NAMES = tuple(bank for bank, _, _ in BANKS)
TPM_CC_POLICY_PCR = 0x0000017F
SIDECAR_SUFFIX = ".pcr-digests.json"
_KEY_CHECK_MESSAGE = b"imagefactory PCR key check"

# One section's digest in every bank: {"sha256": ..., "sha384": ..., "sha512": ...}.
BankDigests = Mapping[str, bytes]


@dataclass(frozen=True)
class BankSignature:
    pcrs: tuple[int, ...]
    pkfp: str
    pol: str
    sig: str


def load_rsa_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        # OpenSSL's RSA key check runs primality tests (~70 ms for 2048 bits); one signature
        # verified below proves the key consistent for signing, which is all we use it for.
        key = serialization.load_pem_private_key(
            path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, OSError) as exc:
        raise InvalidInput(
            f"PCR signing key {path}: cannot read a PEM private key: {exc}"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidInput(f"PCR signing key {path}: must be an RSA key")
    try:
        signature = key.sign(_KEY_CHECK_MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(signature, _KEY_CHECK_MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        raise InvalidInput(f"PCR signing key {path}: inconsistent RSA key") from None
    return key


def public_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The `.pcrpkey` section: PEM "PUBLIC KEY" (PKIX)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def digest_bytes(data: bytes) -> dict[str, bytes]:
    """The digest of `data` in every bank."""
    return {bank: hashlib.new(bank, data).digest() for bank in BANK_NAMES}


def sidecar_path(path: Path) -> Path:
    """Where the digests of `path` are cached: `<file>.pcr-digests.json` beside it."""
    return path.with_name(f"{path.name}{SIDECAR_SUFFIX}")


def _read_sidecar(path: Path, st: os.stat_result) -> dict[str, bytes] | None:
    """The cached digests of `path`, if its sidecar is well formed and its size and mtime match."""
    try:
        document = json.loads(sidecar_path(path).read_bytes())
        if document["size"] != st.st_size or document["mtime_ns"] != st.st_mtime_ns:
            return None
        digests = {bank: bytes.fromhex(document[bank]) for bank in BANK_NAMES}
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if any(len(digests[bank]) != hashlib.new(bank).digest_size for bank in BANK_NAMES):
        return None
    return digests


def _write_sidecar(path: Path, digests: Mapping[str, bytes], before: os.stat_result) -> None:
    """Cache `digests` beside `path` unless the file changed while it was hashed.

    A directory we cannot write to just means no cache.
    """
    try:
        after = path.stat()
    except OSError:
        return
    if (after.st_size, after.st_mtime_ns, after.st_ino) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    ):
        return
    document: dict[str, int | str] = {"size": before.st_size, "mtime_ns": before.st_mtime_ns}
    document.update({bank: digests[bank].hex() for bank in BANK_NAMES})
    with contextlib.suppress(OSError):
        write_atomic(sidecar_path(path), json.dumps(document, sort_keys=True).encode() + b"\n")


def _hash_files(paths: Sequence[Path]) -> dict[Path, dict[str, bytes]]:
    """The digest of each file in every bank, streamed, one thread per (file, bank).

    hashlib releases the GIL while hashing, so the banks of big sections (kernel, initramfs)
    are hashed in parallel; each file is read once per bank, from the page cache.
    """
    if not paths:
        return {}

    def digest(path: Path, bank: str) -> bytes:
        with path.open("rb") as f:
            return hashlib.file_digest(f, bank).digest()

    jobs = [(path, bank) for path in paths for bank in BANK_NAMES]
    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        futures = {job: pool.submit(digest, *job) for job in jobs}
        return {path: {bank: futures[path, bank].result() for bank in BANK_NAMES} for path in paths}


def digest_files(paths: Iterable[Path]) -> dict[Path, dict[str, bytes]]:
    """The digest of each file in every bank: from its sidecar when still valid, else hashed.

    A sidecar is valid while the file keeps the size and mtime it was recorded with: meant for
    files written once (renamed into place) and shared by many UKIs, like the initramfs. A stale
    sidecar is rewritten; files without one are hashed and left alone (see record_digests).
    """
    stats = {path: path.stat() for path in set(paths)}
    digests: dict[Path, dict[str, bytes]] = {}
    pending = []
    for path in sorted(stats, key=lambda p: stats[p].st_size, reverse=True):
        cached = _read_sidecar(path, stats[path])
        if cached is None:
            pending.append(path)
        else:
            digests[path] = cached
    digests.update(_hash_files(pending))
    for path in pending:
        if sidecar_path(path).exists():
            _write_sidecar(path, digests[path], stats[path])
    return digests


def record_digests(path: Path) -> dict[str, bytes]:
    """Hash `path` in every bank and cache the digests in its sidecar, for the UKIs built from it.

    Call once the file is final (renamed into place, mtime set): a later change of its size or
    mtime invalidates the sidecar.
    """
    before = path.stat()
    digests = _hash_files([path])[path]
    _write_sidecar(path, digests, before)
    return digests


def _extend_digest(pcr: bytes, digest: bytes, algorithm: str) -> bytes:
    return hashlib.new(algorithm, pcr + digest).digest()


def _check_names(names: Iterable[str]) -> None:
    unknown = set(names) - set(MEASURED_SECTIONS)
    if unknown:
        raise InvalidInput(f"sections not measured into PCR 11: {sorted(unknown)}")


def pcr_values_from_digests(digests: Mapping[str, BankDigests], algorithm: str) -> dict[str, bytes]:
    """PCR 11 after each phase, from each present section's digests (section name -> bank -> digest).

    Every extend hashes a digest, so a section's bytes are hashed once per bank however many
    profiles measure it.
    """
    _check_names(digests)
    pcr = bytes(hashlib.new(algorithm).digest_size)
    for name in MEASURED_SECTIONS:
        if name in digests:
            name_digest = hashlib.new(algorithm, name.encode() + b"\0").digest()
            pcr = _extend_digest(pcr, name_digest, algorithm)
            pcr = _extend_digest(pcr, digests[name][algorithm], algorithm)
    values = {}
    for phase, _ in PHASES:
        pcr = _extend_digest(pcr, hashlib.new(algorithm, phase.encode()).digest(), algorithm)
        values[phase] = pcr
    return values


def pcr_values(sections: Mapping[str, bytes], algorithm: str) -> dict[str, bytes]:
    """PCR 11 after each phase, starting from zero and measuring the sections present."""
    _check_names(sections)
    return pcr_values_from_digests(
        {
            name: {algorithm: hashlib.new(algorithm, data).digest()}
            for name, data in sections.items()
        },
        algorithm,
    )


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


def sign(
    digests: Mapping[str, BankDigests], key: rsa.RSAPrivateKey
) -> dict[str, list[BankSignature]]:
    """Signed policies per bank for every signed phase, from the measured sections' digests."""
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    fingerprint = hashlib.sha256(public_der).hexdigest()
    result: dict[str, list[BankSignature]] = {}
    for bank, tpm_alg, hash_algorithm in BANKS:
        values = pcr_values_from_digests(digests, bank)
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


def pcrsig_json(digests: Mapping[str, BankDigests], key: rsa.RSAPrivateKey) -> bytes:
    """The `.pcrsig` section bytes, compact JSON in Go's field order."""
    document = {
        bank: [{"pcrs": list(s.pcrs), "pkfp": s.pkfp, "pol": s.pol, "sig": s.sig} for s in sigs]
        for bank, sigs in sign(digests, key).items()
    }
    return json.dumps(document, separators=(",", ":")).encode()
