"""Which partitions a Talos disk image has, per bootloader and version (upstream partitions.go).

GRUB: EFI, BIOS, BOOT, META; sd-boot: EFI (EFI+BIOS+BOOT sized), META; dual-boot: EFI (UKI sized),
BIOS, BOOT, META. Below 1.8 the image also allocates STATE and EPHEMERAL (left unformatted).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from imagefactory.imager.disk.gpt import (
    BIOS_BOOT,
    EFI_SYSTEM,
    LEGACY_BIOS_BOOTABLE,
    LINUX_FILESYSTEM,
    Partition,
)
from imagefactory.quirks import Quirks
from imagefactory.schematic import Bootloader
from imagefactory.units import MIB


class Filesystem(enum.StrEnum):
    VFAT = "vfat"
    XFS = "xfs"
    # BIOS holds GRUB's core.img, META the ADV: both written as raw bytes.
    RAW = "raw"
    # Allocated only; Talos formats it on first boot.
    NONE = "none"


@dataclass(frozen=True)
class Slot:
    partition: Partition
    filesystem: Filesystem


def _efi(size: int) -> Slot:
    return Slot(Partition("EFI", EFI_SYSTEM, size), Filesystem.VFAT)


def _bios(quirks: Quirks) -> Slot:
    return Slot(
        Partition("BIOS", BIOS_BOOT, quirks.bios_size, LEGACY_BIOS_BOOTABLE), Filesystem.RAW
    )


def _boot(quirks: Quirks) -> Slot:
    return Slot(Partition("BOOT", LINUX_FILESYSTEM, quirks.boot_size), Filesystem.XFS)


def _meta(quirks: Quirks) -> Slot:
    return Slot(Partition("META", LINUX_FILESYSTEM, quirks.meta_size), Filesystem.RAW)


def slots(bootloader: Bootloader, quirks: Quirks, disk_size: int) -> tuple[Slot, ...]:
    """The partitions in order; EPHEMERAL (below 1.8) takes what is left up to the backup table."""
    layout: tuple[Slot, ...]
    if bootloader is Bootloader.GRUB:
        layout = (_efi(quirks.efi_size), _bios(quirks), _boot(quirks), _meta(quirks))
    elif bootloader is Bootloader.SD_BOOT:
        layout = (_efi(quirks.uki_efi_size), _meta(quirks))
    else:
        layout = (_efi(quirks.uki_efi_size), _bios(quirks), _boot(quirks), _meta(quirks))
    if quirks.skip_data_partitions:
        return layout
    state = Slot(Partition("STATE", LINUX_FILESYSTEM, quirks.state_size), Filesystem.NONE)
    # 1 MiB lead-in and 1 MiB for the backup table and alignment.
    used = MIB + sum(s.partition.size for s in (*layout, state)) + MIB
    rest = (disk_size - used) // MIB * MIB
    ephemeral = Slot(Partition("EPHEMERAL", LINUX_FILESYSTEM, rest), Filesystem.NONE)
    return (*layout, state, *((ephemeral,) if rest > 0 else ()))
