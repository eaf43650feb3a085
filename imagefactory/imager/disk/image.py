"""Assemble a raw disk image from plain files: GPT, per-partition file systems, GRUB, sd-boot, META.

No loop device, mount or root: every file system is a file written at its partition's offset, and
everything not written stays a hole.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imagefactory.errors import InvalidInput
from imagefactory.imager.disk import bootloaders, filesystems, gpt, layout
from imagefactory.imager.disk.layout import Filesystem
from imagefactory.imager.disk.sparse import copy_sparse
from imagefactory.imager.efivars import AuthFiles
from imagefactory.imager.pesign import SecureBootSigner
from imagefactory.platforms import Arch
from imagefactory.profile import EnrollKeys
from imagefactory.quirks import quirks_for
from imagefactory.schematic import Bootloader
from imagefactory.versions import TalosVersion

# An overlay's install step: (raw disk, mount prefix whose boot/EFI/ becomes the EFI partition).
OverlayInstall = Callable[[Path, Path], None]


@dataclass(frozen=True)
class DiskInputs:
    kernel: Path
    initramfs: Path
    cmdline: str
    uki: Path | None = None
    sd_boot: Path | None = None
    meta: bytes = b""


@dataclass(frozen=True)
class DiskSpec:
    version: TalosVersion
    arch: Arch
    bootloader: Bootloader
    size: int
    sector_size: int
    epoch: int
    enroll: EnrollKeys = EnrollKeys.OFF
    signer: SecureBootSigner | None = None
    auth: AuthFiles | None = None
    skip_sectors: int = 0
    overlay_install: OverlayInstall | None = field(default=None, compare=False)


def build_disk(out: Path, spec: DiskSpec, inputs: DiskInputs) -> None:
    """Write the raw image `out` of exactly spec.size bytes."""
    quirks = quirks_for(spec.version)
    if spec.bootloader is Bootloader.DUAL_BOOT and spec.arch is not Arch.AMD64:
        raise InvalidInput(f"dual-boot disk images are amd64 only, not {spec.arch}")
    slots = layout.slots(spec.bootloader, quirks, spec.size)
    placed = gpt.place(
        [s.partition for s in slots], spec.size, spec.sector_size, skip_sectors=spec.skip_sectors
    )
    by_label = {p.partition.label: p for p in placed}
    with tempfile.TemporaryDirectory(prefix="disk-", dir=out.parent) as tmp:
        work = Path(tmp)
        prefix = work / "mnt"
        efi = prefix / "boot" / "EFI"
        efi.mkdir(parents=True)
        boot_tree = work / "BOOT"
        with out.open("wb") as f:
            f.truncate(spec.size)
            gpt.write_gpt(f, placed, spec.size, spec.sector_size)
        _boot_files(spec, inputs, efi, boot_tree)
        if spec.overlay_install is not None:
            spec.overlay_install(out, prefix)
        fd = os.open(out, os.O_WRONLY)
        try:
            for slot in slots:
                where = by_label[slot.partition.label]
                if slot.filesystem is Filesystem.VFAT:
                    image = work / "efi.img"
                    filesystems.build_vfat(
                        image, slot.partition.size, efi, epoch=spec.epoch,
                        sector_size=spec.sector_size,
                    )  # fmt: skip
                    copy_sparse(image, fd, where.offset)
                    image.unlink()
                elif slot.filesystem is Filesystem.XFS:
                    image = work / "boot.img"
                    filesystems.build_xfs(
                        image, slot.partition.size, boot_tree, label=slot.partition.label,
                        lts_config=quirks.xfs_config, epoch=spec.epoch,
                        sector_size=spec.sector_size,
                    )  # fmt: skip
                    copy_sparse(image, fd, where.offset)
                    image.unlink()
            if "BIOS" in by_label and spec.arch is Arch.AMD64:
                bios = by_label["BIOS"]
                core = bootloaders.grub_bios_core(work / "core.img", spec.epoch)
                if len(core) > bios.partition.size:
                    raise InvalidInput("GRUB core.img does not fit the BIOS partition")
                mbr_code, core = bootloaders.patch_bios(
                    bootloaders.BOOT_IMG.read_bytes(), core, bios.first_lba
                )
                os.pwrite(fd, mbr_code, 0)
                os.pwrite(fd, core, bios.offset)
            if any(inputs.meta):
                meta = by_label["META"]
                if len(inputs.meta) != meta.partition.size:
                    raise InvalidInput("META image does not match the META partition size")
                os.pwrite(fd, inputs.meta, meta.offset)
        finally:
            os.close(fd)


def _boot_files(spec: DiskSpec, inputs: DiskInputs, efi: Path, boot_tree: Path) -> None:
    uses_grub = spec.bootloader in (Bootloader.GRUB, Bootloader.DUAL_BOOT)
    if uses_grub:
        bootloaders.grub_boot_tree(
            boot_tree, kernel=inputs.kernel, initramfs=inputs.initramfs, cmdline=inputs.cmdline,
            version=spec.version, epoch=spec.epoch,
        )  # fmt: skip
    if spec.bootloader is Bootloader.GRUB:
        bootloaders.grub_efi(efi, spec.arch, spec.epoch)
        return
    if inputs.uki is None or inputs.sd_boot is None:
        raise InvalidInput(f"a {spec.bootloader} disk image needs the UKI and systemd-boot")
    bootloaders.sd_boot_tree(
        efi, arch=spec.arch, version=spec.version, uki=inputs.uki, sd_boot=inputs.sd_boot,
        enroll=spec.enroll, signer=spec.signer, auth=spec.auth, epoch=spec.epoch,
    )  # fmt: skip
