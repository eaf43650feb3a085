"""Build the Talos ISO: GRUB (grub-mkrescue), sd-boot (xorrisofs + appended EFI FAT) or hybrid.

Layout, labels, dates and loader.conf follow upstream pkg/imager/iso and out.go outISO.
"""

from __future__ import annotations

import datetime
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from imagefactory import tools
from imagefactory.errors import InvalidInput
from imagefactory.imager import esp
from imagefactory.imager.efivars import AuthFiles, generate_auth_files
from imagefactory.imager.pesign import SecureBootSigner
from imagefactory.platforms import Arch
from imagefactory.profile import EnrollKeys
from imagefactory.quirks import iso_volume_id, iso_volume_set_id, quirks_for
from imagefactory.schematic import Bootloader
from imagefactory.units import MIB
from imagefactory.versions import TalosVersion

EFI_BASE_SIZE = 10 * MIB
GRUB_I386_PC = Path("/usr/lib/grub/i386-pc")
_GRUB_SPECIAL = '\\{}&$|;<>"'


@dataclass(frozen=True)
class IsoInputs:
    """What goes on the ISO: kernel/initramfs/cmdline for GRUB, UKI and sd-boot for UEFI."""

    kernel: Path | None = None
    initramfs: Path | None = None
    cmdline: str = ""
    uki: Path | None = None
    sd_boot: Path | None = None


def grub_quote(text: str) -> str:
    """Backslash-escape GRUB's special characters (upstream grub.Quote)."""
    for char in _GRUB_SPECIAL:
        text = text.replace(char, "\\" + char)
    return text


def grub_cfg(cmdline: str, version: TalosVersion) -> str:
    quoted = grub_quote(cmdline)
    entry = (
        "menuentry {title} {{\n"
        "\tset gfxmode=auto\n"
        "\tset gfxpayload=text\n"
        "\tlinux /boot/vmlinuz {args}\n"
        "\tinitrd /boot/initramfs.xz\n"
        "}}\n"
    )
    cfg = (
        "set default=0\nset timeout=3\n\ninsmod all_video\n\n"
        "terminal_input console\nterminal_output console\n\n"
    )
    cfg += entry.format(title='"Talos ISO"', args=quoted) + "\n"
    if quirks_for(version).grub_reset_entry:
        reset_args = f"{quoted} talos.experimental.wipe=system"
        cfg += entry.format(title='"Reset Talos installation"', args=reset_args)
    return cfg


def loader_conf(enroll: EnrollKeys) -> str:
    return f"# systemd-boot configuration\n\ntimeout 10\n\nsecure-boot-enroll {enroll}\n"


def _date_and_label_args(version: TalosVersion, epoch: int) -> list[str]:
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y%m%d%H%M%S00")
    args = ["-volume_date", "all_file_dates", f"={epoch}", "-volume_date", "uuid", stamp]
    volid, volset = iso_volume_id(version), iso_volume_set_id(version)
    if volid is not None and volset is not None:
        args += ["-volid", volid, "-volset-id", volset]
    return args


def _tool_env(epoch: int, shim_dir: Path) -> dict[str, str]:
    # GRUB's own efi.img FAT serial, and SOURCE_DATE_EPOCH for mtools/mkfs inside grub-mkrescue.
    env = {**esp.epoch_env(epoch), "GRUB_FAT_SERIAL_NUMBER": f"{epoch & 0xFFFFFFFF:08x}"}
    if not _grub_knows_fat_serial():
        env["PATH"] = f"{_mformat_shim(shim_dir)}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


@functools.cache
def _grub_knows_fat_serial() -> bool:
    found = shutil.which("grub-mkrescue")
    return found is not None and b"GRUB_FAT_SERIAL_NUMBER" in Path(found).read_bytes()


def _mformat_shim(shim_dir: Path) -> Path:
    """An `mformat` that passes -N $GRUB_FAT_SERIAL_NUMBER, as newer grub-mkrescue does itself.

    Debian 12's grub-mkrescue (2.06) ignores the variable, so its efi.img would get a random serial.
    """
    real = tools.require("mformat")
    shim_dir.mkdir(parents=True, exist_ok=True)
    shim = shim_dir / "mformat"
    shim.write_text(f'#!/bin/sh\nexec {real} -N "$GRUB_FAT_SERIAL_NUMBER" "$@"\n')
    shim.chmod(0o755)
    return shim_dir


def _require(path: Path | None, what: str) -> Path:
    if path is None:
        raise InvalidInput(f"the ISO needs the {what}")
    if not path.is_file():
        raise InvalidInput(f"ISO {what} {path} does not exist")
    return path


def _grub_tree(scratch: Path, inputs: IsoInputs, version: TalosVersion, epoch: int) -> None:
    boot = scratch / "boot"
    (boot / "grub").mkdir(parents=True, exist_ok=True)
    esp.place(_require(inputs.kernel, "kernel"), boot / "vmlinuz", epoch=epoch)
    esp.place(_require(inputs.initramfs, "initramfs"), boot / "initramfs.xz", epoch=epoch)
    (boot / "grub" / "grub.cfg").write_text(grub_cfg(inputs.cmdline, version))


def _efi_image(  # noqa: PLR0917
    scratch: Path,
    inputs: IsoInputs,
    version: TalosVersion,
    arch: Arch,
    enroll: EnrollKeys,
    cert_der: bytes | None,
    auth: AuthFiles | None,
    epoch: int,
) -> Path:
    """Write EFI/ and loader/ into scratch and the FAT image efiboot.img holding them."""
    sd_boot = _require(inputs.sd_boot, "systemd-boot EFI binary")
    uki = _require(inputs.uki, "UKI")
    size = EFI_BASE_SIZE + sum(-(-p.stat().st_size // MIB) * MIB for p in (sd_boot, uki))
    size = max(size, esp.MIN_FAT32_SIZE)
    (scratch / "EFI" / "BOOT").mkdir(parents=True, exist_ok=True)
    (scratch / "EFI" / "Linux").mkdir(parents=True, exist_ok=True)
    (scratch / "loader").mkdir(parents=True, exist_ok=True)
    esp.place(sd_boot, scratch / "EFI" / "BOOT" / f"BOOT{arch.efi_suffix.upper()}.EFI", epoch=epoch)
    esp.place(uki, scratch / "EFI" / "Linux" / f"Talos-{version.tag}.efi", epoch=epoch)
    (scratch / "loader" / "loader.conf").write_text(loader_conf(enroll))
    # A read-only placeholder keeps newer systemd-boot from creating one on read-only media.
    seed = scratch / "loader" / "random-seed"
    seed.write_bytes(bytes(32))
    seed.chmod(0o444)
    if cert_der is not None:
        (scratch / "EFI" / "keys").mkdir(exist_ok=True)
        (scratch / "EFI" / "keys" / "uki-signing-cert.der").write_bytes(cert_der)
    if auth is not None:
        keys = scratch / "loader" / "keys" / "auto"
        keys.mkdir(parents=True, exist_ok=True)
        for name, path in auth.items():
            shutil.copyfile(path, keys / name)
    image = scratch / "efiboot.img"
    esp.touch_tree(scratch, epoch)
    esp.make_fat(image, size, epoch=epoch, label="EFI", spc=esp.sectors_per_cluster(size))
    esp.copy_into(image, [scratch / "EFI", scratch / "loader"], epoch=epoch)
    esp.set_read_only(image, "loader/random-seed", epoch=epoch)
    return image


def build_iso(
    *,
    out: Path,
    version: TalosVersion,
    arch: Arch,
    bootloader: Bootloader,
    inputs: IsoInputs,
    epoch: int,
    secureboot: bool = False,
    enroll_keys: EnrollKeys = EnrollKeys.IF_SAFE,
    signer: SecureBootSigner | None = None,
    auth_files: AuthFiles | None = None,
) -> Path:
    """Build the ISO for `version`; `bootloader` is the profile's resolved ISO bootloader."""
    if secureboot:
        if signer is None:
            raise InvalidInput("a Secure Boot ISO needs the UKI signing certificate")
        signer.check()
        bootloader = Bootloader.SD_BOOT
    if bootloader is Bootloader.DUAL_BOOT and arch is not Arch.AMD64:
        raise InvalidInput(f"a hybrid (dual-boot) ISO is amd64 only, not {arch}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iso-", dir=out.parent) as tmp:
        scratch = Path(tmp) / "iso"
        scratch.mkdir()
        partial = Path(tmp) / out.name
        tail = _date_and_label_args(version, epoch)
        if bootloader is Bootloader.GRUB:
            _grub_tree(scratch, inputs, version, epoch)
            esp.touch_tree(scratch, epoch)
            # fmt: off
            argv: list[str | os.PathLike[str]] = [
                "grub-mkrescue",
                "--compress=xz",
                f"--output={partial}",
                "--verbose",
                scratch,
                "-iso-level", "3",
                "--",
                *tail,
            ]
            # fmt: on
        else:
            enroll = enroll_keys if secureboot else EnrollKeys.OFF
            cert_der = None
            auth = None
            if secureboot and signer is not None:
                cert_der = _cert_der(signer.cert)
                auth = auth_files or generate_auth_files(signer, Path(tmp) / "auth", epoch=epoch)
            if bootloader is Bootloader.DUAL_BOOT:
                _grub_tree(scratch, inputs, version, epoch)
            image = _efi_image(scratch, inputs, version, arch, enroll, cert_der, auth, epoch)
            esp.touch_tree(scratch, epoch)
            argv = (
                _hybrid_argv(partial, scratch, image)
                if bootloader is Bootloader.DUAL_BOOT
                else (_uefi_argv(partial, scratch, image))
            )
            argv += tail
        tools.run(argv, env=_tool_env(epoch, Path(tmp) / "bin"))
        os.replace(partial, out)
    return out


def _uefi_argv(out: Path, scratch: Path, image: Path) -> list[str | os.PathLike[str]]:
    # fmt: off
    return [
        "xorrisofs",
        "-e", "--interval:appended_partition_2:all::",
        "-append_partition", "2", "0xef", image,
        "-partition_cyl_align", "all",
        "-partition_offset", "16",
        "-iso_mbr_part_type", "0x83",
        "-no-emul-boot",
        "-m", "efiboot.img",
        "-iso-level", "3",
        "-o", out,
        scratch,
        "--",
    ]
    # fmt: on


def _hybrid_argv(out: Path, scratch: Path, image: Path) -> list[str | os.PathLike[str]]:
    # BIOS boots GRUB from the ISO 9660 tree; UEFI boots sd-boot from the appended FAT.
    # fmt: off
    return [
        "grub-mkrescue",
        "--compress=xz",
        f"--output={out}",
        "--verbose",
        f"--directory={GRUB_I386_PC}",
        "-m", "efiboot.img",
        "-iso-level", "3",
        scratch,
        "-eltorito-alt-boot",
        "-e", "--interval:appended_partition_2:all::",
        "-append_partition", "2", "0xef", image,
        "-appended_part_as_gpt",
        "-partition_cyl_align", "all",
        "-partition_offset", "16",
        "-iso_mbr_part_type", "0x83",
        "-no-emul-boot",
        "--",
    ]
    # fmt: on


def _cert_der(cert: Path) -> bytes:
    try:
        return x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    except ValueError as exc:
        raise InvalidInput(
            f"Secure Boot certificate {cert}: not a PEM certificate: {exc}"
        ) from None
