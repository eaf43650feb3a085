"""Build a Unified Kernel Image: systemd stub + os-release, cmdline, uname, kernel, initrd, profiles.

Section order, contents, PCR 11 signatures and Secure Boot signing follow upstream internal/pkg/uki.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagefactory.errors import InvalidInput
from imagefactory.imager import pcr, pe
from imagefactory.imager.pesign import SecureBootSigner, sign
from imagefactory.platforms import Arch
from imagefactory.profile import OutputKind
from imagefactory.quirks import quirks_for
from imagefactory.versions import TalosVersion

OS_NAME = "Talos"
WIPE_PARAM = "talos.experimental.wipe"
# The bzImage setup header: "HdrS" magic, setup sector count, kernel_version pointer.
_HDRS_OFFSET = 0x202
_SETUP_SECTS_OFFSET = 0x1F1
_KERNEL_VERSION_OFFSET = 0x20E

_OS_RELEASE = (
    'NAME="{name}"\n'
    "ID={id}\n"
    "VERSION_ID={version}\n"
    'PRETTY_NAME="{name} ({version})"\n'
    'HOME_URL="https://www.talos.dev/"\n'
    'BUG_REPORT_URL="https://github.com/siderolabs/talos/issues"\n'
    'VENDOR_NAME="Sidero Labs"\n'
    'VENDOR_URL="https://www.siderolabs.com/"\n'
)


@dataclass(frozen=True)
class UkiProfile:
    """One `.profile` section (systemd >= 257 multi-profile UKIs) and its own `.cmdline`."""

    id: str
    title: str = ""
    cmdline: str = ""

    def section(self) -> bytes:
        return (f"ID={self.id}" + (f"\nTITLE={self.title}" if self.title else "")).encode()


@dataclass(frozen=True)
class UkiResult:
    path: Path
    sections: tuple[str, ...]


def os_release(version: TalosVersion, name: str = OS_NAME) -> bytes:
    return _OS_RELEASE.format(
        name=name, id=name.replace(" ", "_").lower(), version=version.tag
    ).encode()


def extra_profiles(kind: OutputKind, cmdline: str) -> tuple[UkiProfile, ...]:
    """The reset profiles upstream adds after `main` for each output kind (>= 1.10)."""
    if kind is OutputKind.ISO:
        return (UkiProfile("reset", "Reset system disk", f"{cmdline} {WIPE_PARAM}=system"),)
    if kind in (OutputKind.IMAGE, OutputKind.INSTALLER):
        return (
            UkiProfile(
                "reset-maintenance",
                "Reset to maintenance mode",
                f"{cmdline} {WIPE_PARAM}=system:EPHEMERAL,STATE",
            ),
        )
    return ()


def kernel_version(kernel: Path) -> str | None:
    """The release from the bzImage header (first word of the version string), if present."""
    with kernel.open("rb") as f:
        header = f.read(1024)
        if len(header) < 0x210 or header[_HDRS_OFFSET : _HDRS_OFFSET + 4] != b"HdrS":
            return None
        setup_sects = header[_SETUP_SECTS_OFFSET]
        (offset,) = struct.unpack_from("<H", header, _KERNEL_VERSION_OFFSET)
        if offset == 0 or offset > setup_sects * 0x200:
            return None
        f.seek(offset + 0x200)
        raw = f.read(256)
    end = raw.find(b"\0")
    if end < 0:
        return None
    return raw[:end].decode("ascii", "replace").split(" ", 1)[0]


@dataclass(frozen=True)
class _Section:
    name: str
    path: Path
    append: bool = True
    # The bytes, when we wrote `path` ourselves: small sections are hashed from memory.
    data: bytes | None = None


def build_uki(
    *,
    stub: Path,
    kernel: Path,
    initramfs: Path,
    cmdline: str,
    version: TalosVersion,
    arch: Arch,
    out: Path,
    epoch: int,
    kind: OutputKind = OutputKind.UKI,
    splash: Path | None = None,
    signer: SecureBootSigner | None = None,
    pcr_key: Path | None = None,
    name: str = OS_NAME,
) -> UkiResult:
    """Assemble the UKI for `version` into `out` (signed when `signer` is given)."""
    for what, path in (("systemd stub", stub), ("kernel", kernel), ("initramfs", initramfs)):
        if not path.is_file():
            raise InvalidInput(f"UKI {what} {path} does not exist")
    if arch not in (Arch.AMD64, Arch.ARM64):
        raise InvalidInput(f"unsupported UKI architecture {arch!r}")
    if (signer is None) != (pcr_key is None):
        raise InvalidInput("a Secure Boot UKI needs both the signing key/cert and the PCR key")
    if signer is not None:
        signer.check()
    quirks = quirks_for(version)
    # Stubs converted with objcopy (Debian's arm64 one) keep SBAT inside .data: nothing to measure.
    sbat = pe.read_section(stub, ".sbat")
    key = pcr.load_rsa_key(pcr_key) if pcr_key is not None else None

    with tempfile.TemporaryDirectory(prefix="uki-") as tmp:
        scratch = Path(tmp)

        def written(section: str, file_name: str, data: bytes, append: bool = True) -> _Section:
            path = scratch / file_name
            path.write_bytes(data)
            return _Section(section, path, append, data)

        uname = kernel_version(kernel)
        osrel = written(".osrel", "os-release", os_release(version, name))
        main_cmdline = written(".cmdline", "cmdline", cmdline.encode())
        linux = _Section(".linux", kernel)
        initrd = _Section(".initrd", initramfs)
        sbat_section = written(".sbat", "sbat", sbat, append=False) if sbat is not None else None
        uname_section = written(".uname", "uname", uname.encode()) if uname else None
        splash_section = _Section(".splash", splash) if splash is not None else None
        pcrpkey = (
            written(".pcrpkey", "pcrpkey", pcr.public_key_pem(key)) if key is not None else None
        )
        head: list[_Section | None]
        if quirks.uki_profiles:
            head = [sbat_section, osrel, main_cmdline, uname_section, splash_section, pcrpkey]
            head += [linux, initrd]
        else:
            # Imagers before 1.10 (objcopy-based) appended in this order.
            head = [osrel, main_cmdline, initrd, splash_section, uname_section, sbat_section]
            head += [pcrpkey, linux]
        sections = [s for s in head if s is not None]

        if quirks.uki_profiles:
            groups: list[list[_Section]] = []
            for index, profile in enumerate((UkiProfile("main"), *extra_profiles(kind, cmdline))):
                group = [written(".profile", f"profile-{index}", profile.section())]
                if profile.cmdline:
                    group.append(written(".cmdline", f"cmdline-{index}", profile.cmdline.encode()))
                groups.append(group)
        else:
            groups = []

        if key is not None:
            digests = _digests([*sections, *(s for group in groups for s in group)])
            if groups:
                base = list(sections)
                for index, group in enumerate(groups):
                    signature = pcr.pcrsig_json(_measured(base + group, digests), key)
                    sections += group
                    sections.append(written(".pcrsig", f"pcrsig-{index}", signature))
            else:
                signature = pcr.pcrsig_json(_measured(sections, digests), key)
                sections.append(written(".pcrsig", "pcrsig", signature))
        else:
            for group in groups:
                sections += group

        appended = [pe.NewSection(s.name, s.path) for s in sections if s.append]
        out.parent.mkdir(parents=True, exist_ok=True)
        if signer is None:
            pe.assemble(stub, appended, out, epoch=epoch)
        else:
            unsigned = scratch / "unsigned.efi"
            pe.assemble(stub, appended, unsigned, epoch=epoch)
            sign(unsigned, out, signer, epoch=epoch)
        # Stamped like every file we publish; the ISO can then hard-link it instead of copying.
        os.utime(out, (epoch, epoch))
        return UkiResult(out, tuple(s.name for s in appended))


def _digests(sections: Sequence[_Section]) -> dict[Path, pcr.BankDigests]:
    """Every measured section hashed once per bank: small ones from memory, files streamed."""
    measured = [s for s in sections if s.name in pcr.MEASURED_SECTIONS]
    digests: dict[Path, pcr.BankDigests] = {}
    digests.update(pcr.digest_files(s.path for s in measured if s.data is None))
    digests.update({s.path: pcr.digest_bytes(s.data) for s in measured if s.data is not None})
    return digests


def _measured(
    sections: Sequence[_Section], digests: Mapping[Path, pcr.BankDigests]
) -> dict[str, pcr.BankDigests]:
    """What systemd-stub measures: the last section of each name wins (profile cmdlines)."""
    return {s.name: digests[s.path] for s in sections if s.name in pcr.MEASURED_SECTIONS}
