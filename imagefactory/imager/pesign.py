"""Authenticode signing of EFI binaries (UKI, systemd-boot) for Secure Boot, reproducibly.

osslsigncode with `-time` pins the PKCS#7 signing time to the epoch (sbsign always stamps "now").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import InvalidInput


@dataclass(frozen=True)
class SecureBootSigner:
    """The Secure Boot signing key and certificate (PEM files)."""

    key: Path
    cert: Path

    def check(self) -> None:
        for what, path in (("key", self.key), ("certificate", self.cert)):
            if not path.is_file():
                raise InvalidInput(f"Secure Boot signing {what} {path} does not exist")


def sign(src: Path, dst: Path, signer: SecureBootSigner, *, epoch: int) -> None:
    """Write `src` signed with `signer` to `dst`."""
    signer.check()
    dst.unlink(missing_ok=True)
    # fmt: off
    tools.run([
        "osslsigncode", "sign",
        "-certs", signer.cert,
        "-key", signer.key,
        "-h", "sha256",
        "-time", str(epoch),
        "-in", src,
        "-out", dst,
    ])
    # fmt: on
