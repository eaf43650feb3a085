"""Boot files of a disk image: GRUB (BIOS core.img + boot.img patching, UEFI grub-mkimage) and sd-boot.

What goes where follows upstream's bootloader/grub and bootloader/sdboot install in image mode.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from imagefactory import tools
from imagefactory.imager import esp
from imagefactory.imager.efivars import AuthFiles
from imagefactory.imager.iso import grub_quote, loader_conf
from imagefactory.imager.pesign import SecureBootSigner, sign
from imagefactory.platforms import Arch
from imagefactory.profile import EnrollKeys
from imagefactory.versions import TalosVersion

GRUB_LIB = Path("/usr/lib/grub")
BOOT_IMG = GRUB_LIB / "i386-pc" / "boot.img"
# BOOT is the third partition in both GRUB layouts.
GRUB_PREFIX = "(hd0,gpt3)/grub"
GRUB_MODULES = (
    "part_gpt", "ext2", "fat", "xfs", "normal", "configfile", "linux", "boot", "search",
    "search_fs_uuid", "search_fs_file", "ls", "cat", "echo", "test", "help", "reboot", "halt",
    "all_video",
)  # fmt: skip
GRUB_BIOS_MODULES = ("biosdisk", "part_msdos")
_EFI_FORMAT = {Arch.AMD64: "x86_64-efi", Arch.ARM64: "arm64-efi"}
# boot.img: GRUB_BOOT_MACHINE_KERNEL_SECTOR and the drive check nopped for hard disks;
# core.img: diskboot.img's first blocklist start (grub-bios-setup does the same).
BOOT_KERNEL_SECTOR = 0x5C
BOOT_DRIVE_CHECK = 0x66
CORE_BLOCKLIST = 0x200 - 12
MBR_BOOT_CODE = 446


def grub_cfg(cmdline: str, version: TalosVersion) -> str:
    """BOOT/grub/grub.cfg with entry A and the reset entry (upstream grub.Config, image mode)."""
    name = f"A - Talos {version.tag}"
    quoted = grub_quote(cmdline)
    entry = (
        'menuentry "{title}" {{\n'
        "  set gfxmode=auto\n"
        "  set gfxpayload=text\n"
        "  linux /A/vmlinuz {args}\n"
        "  initrd /A/initramfs.xz\n"
        "}}\n"
    )
    return (
        f'set default="{name}"\n\nset timeout=3\n\ninsmod all_video\n\n'
        "terminal_input console\nterminal_output console\n\n"
        + entry.format(title=name, args=quoted)
        + "\n"
        + entry.format(
            title="Reset Talos installation and return to maintenance mode",
            args=f"{quoted} talos.experimental.wipe=system:EPHEMERAL,STATE",
        )
    )


def grub_boot_tree(
    boot: Path, *, kernel: Path, initramfs: Path, cmdline: str, version: TalosVersion, epoch: int
) -> None:
    """The BOOT partition's files: A/vmlinuz, A/initramfs.xz, grub/grub.cfg."""
    (boot / "A").mkdir(parents=True, exist_ok=True)
    (boot / "grub").mkdir(parents=True, exist_ok=True)
    esp.place(kernel, boot / "A" / "vmlinuz", epoch=epoch)
    esp.place(initramfs, boot / "A" / "initramfs.xz", epoch=epoch)
    (boot / "grub" / "grub.cfg").write_text(grub_cfg(cmdline, version))


def grub_efi(efi: Path, arch: Arch, epoch: int) -> None:
    """EFI/boot/BOOTX64.efi (BOOTAA64.efi): GRUB with the BOOT partition as prefix."""
    target = efi / "EFI" / "boot" / f"BOOT{arch.efi_suffix.upper()}.efi"
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = _EFI_FORMAT[arch]
    # fmt: off
    tools.run([
        "grub-mkimage",
        "--format", fmt,
        "--directory", GRUB_LIB / fmt,
        "--compression", "xz",
        "--prefix", GRUB_PREFIX,
        "--output", target,
        *GRUB_MODULES,
    ], env=esp.epoch_env(epoch))
    # fmt: on


def grub_bios_core(out: Path, epoch: int) -> bytes:
    """GRUB's i386-pc core.img (still to be patched with its own disk location)."""
    # fmt: off
    tools.run([
        "grub-mkimage",
        "--format", "i386-pc",
        "--directory", GRUB_LIB / "i386-pc",
        "--prefix", GRUB_PREFIX,
        "--output", out,
        *GRUB_MODULES, *GRUB_BIOS_MODULES,
    ], env=esp.epoch_env(epoch))
    # fmt: on
    return out.read_bytes()


def patch_bios(boot_img: bytes, core_img: bytes, bios_lba: int) -> tuple[bytes, bytes]:
    """boot.img points at core.img in the BIOS partition; core.img at its own second sector."""
    if len(boot_img) != 512:
        raise ValueError(f"boot.img is {len(boot_img)} bytes, not 512")
    boot, core = bytearray(boot_img), bytearray(core_img)
    struct.pack_into("<Q", boot, BOOT_KERNEL_SECTOR, bios_lba)
    boot[BOOT_DRIVE_CHECK : BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
    struct.pack_into("<Q", core, CORE_BLOCKLIST, bios_lba + 1)
    return bytes(boot[:MBR_BOOT_CODE]), bytes(core)


def sd_boot_tree(
    efi: Path,
    *,
    arch: Arch,
    version: TalosVersion,
    uki: Path,
    sd_boot: Path,
    enroll: EnrollKeys,
    signer: SecureBootSigner | None,
    auth: AuthFiles | None,
    epoch: int,
) -> None:
    """loader/loader.conf, EFI/Linux/Talos-<v>.efi, EFI/boot/BOOTX64.efi (+ keys for Secure Boot)."""
    boot_dir = efi / "EFI" / "boot"
    boot_dir.mkdir(parents=True, exist_ok=True)
    (efi / "EFI" / "Linux").mkdir(parents=True, exist_ok=True)
    (efi / "loader").mkdir(parents=True, exist_ok=True)
    loader = boot_dir / f"BOOT{arch.efi_suffix.upper()}.efi"
    if signer is not None:
        sign(sd_boot, loader, signer, epoch=epoch)
    else:
        esp.place(sd_boot, loader, epoch=epoch)
    esp.place(uki, efi / "EFI" / "Linux" / f"Talos-{version.tag}.efi", epoch=epoch)
    (efi / "loader" / "loader.conf").write_text(loader_conf(enroll))
    if auth is not None:
        keys = efi / "loader" / "keys" / "auto"
        keys.mkdir(parents=True, exist_ok=True)
        for name, path in sorted(auth.items()):
            shutil.copyfile(path, keys / name)
