"""Version quirks: every boundary of the timeline, checked on both sides."""

from __future__ import annotations

import dataclasses

import pytest

from imagefactory.quirks import (
    GIB,
    MIB,
    Compression,
    Quirks,
    boundaries,
    iso_volume_id,
    iso_volume_set_id,
    quirks_for,
)
from imagefactory.schematic import Bootloader
from imagefactory.versions import TalosVersion

V = TalosVersion.parse


def q(text: str) -> Quirks:
    return quirks_for(V(text))


# (attribute, value just before the boundary, boundary version, value from it on)
BOUNDARIES = [
    ("grub_reset_entry", False, "1.4.0", True),
    ("uki", False, "1.5.0", True),
    ("multidoc", False, "1.5.0", True),
    ("installer_two_layers", False, "1.5.0", True),
    ("compressed_meta", False, "1.6.3", True),
    ("overlays", False, "1.7.0", True),
    ("compression", Compression.XZ, "1.8.0", Compression.ZSTD),
    ("iso_label", False, "1.8.0", True),
    ("metal_console_ttys0", True, "1.8.0", False),
    ("halt_if_installed", False, "1.8.0", True),
    ("skip_data_partitions", False, "1.8.0", True),
    ("xfs_config", "lts_6.1.conf", "1.8.0", "lts_6.6.conf"),
    ("selinux", False, "1.10.0", True),
    ("sd_boot_for_uefi", False, "1.10.0", True),
    ("usr_merge", False, "1.10.0", True),
    ("uki_profiles", False, "1.10.0", True),
    ("unified_installer", False, "1.10.0", True),
    ("xfs_config", "lts_6.6.conf", "1.10.0", "lts_6.12.conf"),
    ("ima", True, "1.10.100", False),
    ("boot_size", 1000 * MIB, "1.11.0", 2000 * MIB),
    ("talosctl_download", False, "1.11.0", True),
    ("embedded_config", False, "1.12.0", True),
    ("module_sig_enforce", False, "1.12.0", True),
    ("iso_bootloader_selectable", False, "1.12.0", True),
    ("proc_mem_override_never", False, "1.13.0", True),
    ("xfs_config", "lts_6.12.conf", "1.13.0", "lts_6.18.conf"),
    ("init_on_alloc", True, "1.14.0", False),
    ("nvme_timeout_aws_only", False, "1.14.0", True),
    ("lockdown_confidentiality", True, "1.14.0", False),
    ("xfs_min_allocation_group_size", 0, "1.14.0", 64 * GIB),
]


def _before(version: TalosVersion) -> TalosVersion:
    if version.patch:
        return TalosVersion(version.major, version.minor, version.patch - 1)
    return TalosVersion(version.major, version.minor - 1, 99)


@pytest.mark.parametrize(("name", "old", "since", "new"), BOUNDARIES)
def test_boundary(name: str, old: object, since: str, new: object) -> None:
    boundary = V(since)
    assert getattr(quirks_for(_before(boundary)), name) == old
    assert getattr(quirks_for(boundary), name) == new
    # Pre-releases of the boundary release already have the release's quirks.
    assert getattr(quirks_for(V(f"{since}-alpha.0")), name) == new
    assert getattr(quirks_for(V(f"{since}-rc.9")), name) == new
    later = TalosVersion(boundary.major, boundary.minor, boundary.patch + 1)
    assert getattr(quirks_for(later), name) == new


def test_every_boundary_is_tested() -> None:
    assert {V(since) for _, _, since, _ in BOUNDARIES} == set(boundaries())
    names = {name for name, *_ in BOUNDARIES}
    flags = {f.name for f in dataclasses.fields(Quirks)} - {
        "version",
        "efi_size",
        "bios_size",
        "meta_size",
        "state_size",
    }
    assert names == flags


def test_ima_keeps_to_upstreams_bound() -> None:
    # Upstream: SupportsIMA is version <= 1.10.99.
    assert q("1.10.99").ima
    assert not q("1.11.0-alpha.0").ima


def test_prerelease_quirks_equal_release_quirks() -> None:
    assert q("v1.12.0-beta.1") == q("1.12.0")
    assert q("v1.10.0-alpha.0").version == V("1.10.0")


def test_derived_paths_and_sizes() -> None:
    old, new = q("1.9.5"), q("1.10.0")
    assert (old.modules_path, old.firmware_path) == ("/lib/modules", "/lib/firmware")
    assert (new.modules_path, new.firmware_path) == ("/usr/lib/modules", "/usr/lib/firmware")
    assert q("1.10.0").uki_efi_size == 1101 * MIB
    assert q("1.11.0").uki_efi_size == 2101 * MIB
    assert q("1.13.0").xfs_config_path == "/usr/share/xfsprogs/mkfs/lts_6.18.conf"
    assert q("1.7.0").squashfs_compression_args == ("-comp", "xz", "-Xdict-size", "100%")
    assert q("1.8.0").squashfs_compression_args == (
        "-comp",
        "zstd",
        "-Xcompression-level",
        "18",
    )


@pytest.mark.parametrize(
    ("version", "arch", "secureboot", "requested", "expected"),
    [
        ("1.9.0", "amd64", False, None, Bootloader.GRUB),
        ("1.9.0", "arm64", False, None, Bootloader.GRUB),
        ("1.9.0", "amd64", True, None, Bootloader.SD_BOOT),
        ("1.10.0", "amd64", False, None, Bootloader.DUAL_BOOT),
        ("1.10.0", "arm64", False, None, Bootloader.SD_BOOT),
        ("1.10.0", "amd64", True, None, Bootloader.SD_BOOT),
        ("1.12.0", "amd64", False, Bootloader.GRUB, Bootloader.GRUB),
        ("1.12.0", "arm64", False, Bootloader.DUAL_BOOT, Bootloader.DUAL_BOOT),
        ("1.9.0", "amd64", False, Bootloader.SD_BOOT, Bootloader.SD_BOOT),
        ("1.12.0", "amd64", True, Bootloader.GRUB, Bootloader.SD_BOOT),
    ],
)
def test_disk_bootloader(
    version: str, arch: str, secureboot: bool, requested: Bootloader | None, expected: Bootloader
) -> None:
    assert q(version).disk_bootloader(arch, secureboot=secureboot, requested=requested) == expected


@pytest.mark.parametrize(
    ("version", "arch", "secureboot", "requested", "expected"),
    [
        ("1.9.0", "amd64", False, None, Bootloader.GRUB),
        ("1.9.0", "amd64", False, Bootloader.SD_BOOT, Bootloader.GRUB),
        ("1.9.0", "amd64", True, None, Bootloader.SD_BOOT),
        ("1.10.0", "amd64", False, None, Bootloader.DUAL_BOOT),
        ("1.11.0", "arm64", False, None, Bootloader.DUAL_BOOT),
        ("1.11.0", "amd64", False, Bootloader.GRUB, Bootloader.DUAL_BOOT),
        ("1.12.0", "arm64", False, None, Bootloader.SD_BOOT),
        ("1.12.0", "amd64", False, None, Bootloader.DUAL_BOOT),
        ("1.12.0", "amd64", False, Bootloader.GRUB, Bootloader.GRUB),
        ("1.12.0", "amd64", True, Bootloader.GRUB, Bootloader.SD_BOOT),
    ],
)
def test_iso_bootloader(
    version: str, arch: str, secureboot: bool, requested: Bootloader | None, expected: Bootloader
) -> None:
    assert q(version).iso_bootloader(arch, secureboot=secureboot, requested=requested) == expected


def test_iso_labels() -> None:
    assert iso_volume_id(V("1.7.6")) is None
    assert iso_volume_set_id(V("1.7.6")) is None
    assert iso_volume_id(V("1.11.0")) == "TALOS_V1_11_0"
    assert iso_volume_id(V("v1.8.6-beta.0")) == "TALOS_V1_8_6_BETA_0"
    assert iso_volume_set_id(V("1.8.0")) == "Talos-v1.8.0"
    long = iso_volume_id(V("1.9.0-alpha.0-5-gabcdef0123456789"))
    assert long is not None
    assert len(long) == 32
