"""What changes per Talos version: one timeline table, folded into a frozen `Quirks` per version.

Mirrors upstream pkg/machinery/imager/quirks; pre-release suffixes are ignored (v1.11.0-beta.1 is 1.11.0).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagefactory.schematic import Bootloader
from imagefactory.units import MIB
from imagefactory.versions import TalosVersion

GIB = 1024 * MIB


class Compression(enum.StrEnum):
    """Compression of the initramfs, of extension squashfs images and of the `.zst`/`.xz` default."""

    XZ = "xz"
    ZSTD = "zstd"


@dataclass(frozen=True)
class Quirks:
    """Version-dependent behaviour of the imager; the defaults are the oldest behaviour."""

    version: TalosVersion
    grub_reset_entry: bool = False
    uki: bool = False
    multidoc: bool = False
    installer_two_layers: bool = False
    compressed_meta: bool = False
    overlays: bool = False
    compression: Compression = Compression.XZ
    iso_label: bool = False
    metal_console_ttys0: bool = True
    halt_if_installed: bool = False
    skip_data_partitions: bool = False
    xfs_config: str = "lts_6.1.conf"
    selinux: bool = False
    sd_boot_for_uefi: bool = False
    usr_merge: bool = False
    uki_profiles: bool = False
    unified_installer: bool = False
    boot_size: int = 1000 * MIB
    ima: bool = True
    talosctl_download: bool = False
    embedded_config: bool = False
    module_sig_enforce: bool = False
    iso_bootloader_selectable: bool = False
    proc_mem_override_never: bool = False
    init_on_alloc: bool = True
    nvme_timeout_aws_only: bool = False
    lockdown_confidentiality: bool = True
    xfs_min_allocation_group_size: int = 0

    # Partition sizes (upstream partitions.go); only BOOT changes with the version.
    efi_size: int = 100 * MIB
    bios_size: int = 1 * MIB
    meta_size: int = 1 * MIB
    state_size: int = 100 * MIB

    @property
    def uki_efi_size(self) -> int:
        """With a UKI everything lives in EFI, sized as the old EFI + BIOS + BOOT."""
        return self.efi_size + self.bios_size + self.boot_size

    @property
    def modules_path(self) -> str:
        return "/usr/lib/modules" if self.usr_merge else "/lib/modules"

    @property
    def firmware_path(self) -> str:
        return "/usr/lib/firmware" if self.usr_merge else "/lib/firmware"

    @property
    def xfs_config_path(self) -> str:
        return f"/usr/share/xfsprogs/mkfs/{self.xfs_config}"

    @property
    def squashfs_compression_args(self) -> tuple[str, ...]:
        if self.compression is Compression.ZSTD:
            return ("-comp", "zstd", "-Xcompression-level", "18")
        return ("-comp", "xz", "-Xdict-size", "100%")

    def disk_bootloader(
        self, arch: str, *, secureboot: bool, requested: Bootloader | None = None
    ) -> Bootloader:
        """Upstream selectBootloader: Secure Boot forces sd-boot, else an explicit choice wins."""
        if requested is not None and not secureboot:
            return requested
        if secureboot:
            return Bootloader.SD_BOOT
        if not self.sd_boot_for_uefi:
            return Bootloader.GRUB
        if arch == "arm64":
            return Bootloader.SD_BOOT
        return Bootloader.DUAL_BOOT

    def iso_bootloader(
        self, arch: str, *, secureboot: bool, requested: Bootloader | None = None
    ) -> Bootloader:
        """ISO flavour: selectable from 1.12; before, Secure Boot sd-boot, else hybrid or GRUB."""
        if self.iso_bootloader_selectable:
            return self.disk_bootloader(arch, secureboot=secureboot, requested=requested)
        if secureboot:
            return Bootloader.SD_BOOT
        if self.sd_boot_for_uefi:
            return Bootloader.DUAL_BOOT
        return Bootloader.GRUB


# The one table: each row is the release where the listed attributes take the given values.
TIMELINE: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("1.4.0", {"grub_reset_entry": True}),
    ("1.5.0", {"uki": True, "multidoc": True, "installer_two_layers": True}),
    ("1.6.3", {"compressed_meta": True}),
    ("1.7.0", {"overlays": True}),
    (
        "1.8.0",
        {
            "compression": Compression.ZSTD,
            "iso_label": True,
            "metal_console_ttys0": False,
            "halt_if_installed": True,
            "skip_data_partitions": True,
            "xfs_config": "lts_6.6.conf",
        },
    ),
    (
        "1.10.0",
        {
            "selinux": True,
            "sd_boot_for_uefi": True,
            "usr_merge": True,
            "uki_profiles": True,
            "unified_installer": True,
            "xfs_config": "lts_6.12.conf",
        },
    ),
    # Upstream keeps IMA while version <= 1.10.99, so 1.10.100 is the first without it.
    ("1.10.100", {"ima": False}),
    # Upstream's bound is 1.11.0-alpha.3, but quirks drop pre-releases, so 1.11.0 it is.
    ("1.11.0", {"boot_size": 2000 * MIB, "talosctl_download": True}),
    (
        "1.12.0",
        {"embedded_config": True, "module_sig_enforce": True, "iso_bootloader_selectable": True},
    ),
    ("1.13.0", {"proc_mem_override_never": True, "xfs_config": "lts_6.18.conf"}),
    (
        "1.14.0",
        {
            "init_on_alloc": False,
            "nvme_timeout_aws_only": True,
            "lockdown_confidentiality": False,
            "xfs_min_allocation_group_size": 64 * GIB,
        },
    ),
)

_STEPS = tuple((TalosVersion.parse(since), changes) for since, changes in TIMELINE)


def _check_timeline() -> None:
    """Every row names real attributes with values of the attribute's type."""
    oldest = Quirks(version=TalosVersion(0, 0, 0))
    fields = {f.name for f in dataclasses.fields(Quirks)} - {"version"}
    for since, changes in _STEPS:
        for name, value in changes.items():
            if name not in fields or type(value) is not type(getattr(oldest, name)):
                raise TypeError(f"quirks timeline {since}: bad attribute {name}={value!r}")


_check_timeline()


def quirks_for(version: TalosVersion) -> Quirks:
    """Fold every timeline row at or below the version's release into the oldest behaviour."""
    release = version.release
    quirks = Quirks(version=release)
    for since, changes in _STEPS:
        if since <= release:
            quirks = dataclasses.replace(quirks, **changes)
    return quirks


def boundaries() -> tuple[TalosVersion, ...]:
    """Every version where something changes, for tests and docs."""
    return tuple(since for since, _ in _STEPS)


def iso_volume_id(version: TalosVersion) -> str | None:
    """ISO 9660 volume ID `TALOS_V1_11_0` (from 1.8): uppercase, `-._` to `_`, others dropped."""
    if not quirks_for(version).iso_label:
        return None
    label = f"Talos-{version.tag}".upper()
    return re.sub(r"[^A-Z0-9_]", "", re.sub(r"[-._]", "_", label))[:32]


def iso_volume_set_id(version: TalosVersion) -> str | None:
    return f"Talos-{version.tag}" if quirks_for(version).iso_label else None
