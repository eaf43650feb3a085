"""Signed UEFI variable updates (PK/KEK/db .auth) that let systemd-boot auto-enroll our certificate.

As upstream's secureboot/database: each list holds the signing certificate, owner GUID derived from it,
and is signed by that same key; made with efitools, the timestamp pinned to the epoch.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import InvalidInput
from imagefactory.imager.pesign import SecureBootSigner

AuthFiles = dict[str, Path]
AUTH_NAMES = ("PK.auth", "KEK.auth", "db.auth")
_VARIABLES = {"PK.auth": "PK", "KEK.auth": "KEK", "db.auth": "db"}


def owner_guid(cert_pem: bytes) -> str:
    """uuid.NewHash(sha256, NameSpaceX500, pem, 4) as Go's google/uuid computes it."""
    digest = bytearray(hashlib.sha256(uuid.NAMESPACE_X500.bytes + cert_pem).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


def supplied_auth_files(pk: Path | None, kek: Path | None, db: Path | None) -> AuthFiles | None:
    """Pre-built .auth files: all three or none (upstream prepareEnrollmentDBs)."""
    given = {"PK.auth": pk, "KEK.auth": kek, "db.auth": db}
    if all(p is None for p in given.values()):
        return None
    missing = [name for name, p in given.items() if p is None]
    if missing:
        raise InvalidInput(f"partial Secure Boot enrollment database: missing {', '.join(missing)}")
    files = {name: p for name, p in given.items() if p is not None}
    for name, path in files.items():
        if not path.is_file():
            raise InvalidInput(f"Secure Boot {name} {path} does not exist")
    return files


def generate_auth_files(signer: SecureBootSigner, workdir: Path, *, epoch: int) -> AuthFiles:
    """PK, KEK and db updates enrolling the signing certificate, each signed by it."""
    signer.check()
    workdir.mkdir(parents=True, exist_ok=True)
    guid = owner_guid(signer.cert.read_bytes())
    esl = workdir / "cert.esl"
    tools.run(["cert-to-efi-sig-list", "-g", guid, signer.cert, esl])
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    files: AuthFiles = {}
    for name in AUTH_NAMES:
        out = workdir / name
        # fmt: off
        tools.run([
            "sign-efi-sig-list",
            "-g", guid,
            "-t", stamp,
            "-k", signer.key,
            "-c", signer.cert,
            _VARIABLES[name],
            esl,
            out,
        ], env={"TZ": "UTC"})
        # fmt: on
        files[name] = out
    return files
