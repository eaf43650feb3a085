"""Boot the UKI and every ISO kind under qemu and see the marker with the expected command line.

Secure Boot: the snakeoil-signed UKI boots with the snakeoil VARS, one signed by another key is refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import imager_assets as assets
import pytest
import qemu

from imagefactory.imager import esp
from imagefactory.imager.iso import IsoInputs, build_iso
from imagefactory.imager.pesign import SecureBootSigner
from imagefactory.imager.uki import build_uki
from imagefactory.platforms import Arch
from imagefactory.profile import OutputKind
from imagefactory.quirks import quirks_for
from imagefactory.sample.debian import debian_parts
from imagefactory.schematic import Bootloader
from imagefactory.versions import TalosVersion

CMDLINE = "console=ttyS0 panic=-1 bootcheck={nonce}"
WIPE = " talos.experimental.wipe=system"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("qemu-system-x86_64") is None or not qemu.OVMF_CODE.is_file():
        pytest.skip("qemu-system-x86 and ovmf are needed")
    return tmp_path_factory.mktemp("boot")


def _multiprofile(version: str) -> bool:
    return quirks_for(TalosVersion.parse(version)).uki_profiles


def _stub_and_loader(version: str) -> tuple[Path, Path]:
    """Debian 12's systemd 252 below 1.10; from 1.10 systemd 257 (Debian 13), as Talos ships."""
    if not _multiprofile(version):
        return assets.STUB, assets.SD_BOOT
    parts = debian_parts(Arch.AMD64)
    return parts.sd_stub_257, parts.sd_boot_257


def _uki(work: Path, version: str, nonce: str, kind: OutputKind, **kw: object) -> Path:
    out = work / f"{nonce}.efi"
    build_uki(stub=_stub_and_loader(version)[0], kernel=assets.kernel(work), initramfs=assets.marker_initramfs(work),
              cmdline=CMDLINE.format(nonce=nonce), version=TalosVersion.parse(version),
              arch=Arch.AMD64, out=out, epoch=assets.EPOCH, kind=kind, **kw)  # type: ignore[arg-type]  # fmt: skip
    return out


def _fat_with(work: Path, uki: Path) -> Path:
    root = work / f"{uki.stem}-root"
    (root / "EFI" / "BOOT").mkdir(parents=True)
    shutil.copyfile(uki, root / "EFI" / "BOOT" / "BOOTX64.EFI")
    image = work / f"{uki.stem}.img"
    esp.build_fat(image, esp.MIN_FAT32_SIZE, root, epoch=assets.EPOCH)
    return image


def _iso(work: Path, version: str, bootloader: Bootloader, nonce: str) -> Path:
    cmdline = CMDLINE.format(nonce=nonce)
    uki = _uki(work, version, nonce, OutputKind.ISO)
    inputs = IsoInputs(
        assets.kernel(work),
        assets.marker_initramfs(work),
        cmdline,
        uki,
        _stub_and_loader(version)[1],
    )
    return build_iso(out=work / f"{nonce}.iso", version=TalosVersion.parse(version),
                     arch=Arch.AMD64, bootloader=bootloader, inputs=inputs, epoch=assets.EPOCH)  # fmt: skip


def _assert_marker(result: qemu.BootResult, cmdline: str) -> None:
    assert result.ok, f"{result.failure}\n{result.log[-2000:]}"
    assert result.cmdline is not None
    # GRUB prefixes BOOT_IMAGE=…; the rest must be exactly our command line.
    assert result.cmdline.removeprefix("BOOT_IMAGE=/boot/vmlinuz ") == cmdline


def test_uki_boots_from_fat_under_ovmf(work: Path) -> None:
    uki = _uki(work, "1.9.0", "uki-fat", OutputKind.UKI)
    result = qemu.boot(
        [
            *qemu.uefi_args(work),
            "-drive",
            f"file={_fat_with(work, uki)},format=raw,if=virtio,snapshot=on",
        ]
    )
    _assert_marker(result, CMDLINE.format(nonce="uki-fat"))


def test_secureboot_uki_signed_with_snakeoil_boots(work: Path) -> None:
    signer = SecureBootSigner(assets.snakeoil_key(work), assets.SNAKEOIL_CERT)
    uki = _uki(
        work, "1.9.0", "uki-sb", OutputKind.UKI, signer=signer, pcr_key=assets.rsa_key(work, "pcr")
    )
    image = _fat_with(work, uki)
    result = qemu.boot(
        [
            *qemu.uefi_args(work, secure=True),
            "-drive",
            f"file={image},format=raw,if=virtio,snapshot=on",
        ]
    )
    _assert_marker(result, CMDLINE.format(nonce="uki-sb"))


def test_secureboot_uki_signed_with_other_key_is_refused(work: Path) -> None:
    signer = SecureBootSigner(*assets.self_signed(work, "not-enrolled"))
    uki = _uki(
        work, "1.9.0", "uki-bad", OutputKind.UKI, signer=signer, pcr_key=assets.rsa_key(work, "pcr")
    )
    image = _fat_with(work, uki)
    result = qemu.boot(
        [
            *qemu.uefi_args(work, secure=True),
            "-drive",
            f"file={image},format=raw,if=virtio,snapshot=on",
        ]
    )
    assert not result.ok
    assert result.failure in {"Access Denied", "Security Violation"}, result.log[-2000:]


@pytest.mark.parametrize(
    ("version", "bootloader", "uefi"),
    [
        ("1.9.0", Bootloader.GRUB, False),
        ("1.9.0", Bootloader.GRUB, True),
        ("1.11.0", Bootloader.DUAL_BOOT, False),
        # From 1.10 the ISO's UKI has a reset profile after the main one: systemd 257's
        # systemd-boot and stub start the main profile by default (252's took the last one).
        ("1.11.0", Bootloader.DUAL_BOOT, True),
        ("1.12.0", Bootloader.SD_BOOT, True),
    ],
    ids=["grub-bios", "grub-uefi", "hybrid-bios", "hybrid-uefi", "sdboot-uefi"],
)
def test_iso_boots_its_main_profile(
    work: Path, version: str, bootloader: Bootloader, uefi: bool
) -> None:
    nonce = f"iso-{bootloader}-{'uefi' if uefi else 'bios'}"
    iso = _iso(work, version, bootloader, nonce)
    firmware = qemu.uefi_args(work) if uefi else ["-boot", "d"]
    result = qemu.boot([*firmware, "-cdrom", str(iso)])
    _assert_marker(result, CMDLINE.format(nonce=nonce))
    assert result.cmdline is not None and WIPE.strip() not in result.cmdline
