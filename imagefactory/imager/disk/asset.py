"""The disk image kinds of `imagefactory build`: the raw image once per key, then each format from it.

The raw image is keyed by everything written into it, so `metal-amd64.raw.zst` and `.raw.xz` share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagefactory import meta
from imagefactory.errors import InvalidInput
from imagefactory.imager import overlay as overlays
from imagefactory.imager.disk.image import DiskInputs, DiskSpec, build_disk
from imagefactory.imager.efivars import generate_auth_files
from imagefactory.imager.formats import finish
from imagefactory.platforms import Arch
from imagefactory.profile import EnrollKeys
from imagefactory.schematic import Bootloader
from imagefactory.units import MIB

if TYPE_CHECKING:
    from imagefactory.build import Build

SECTOR = 512


def _overlay_size_and_offset(build: Build) -> tuple[int | None, int]:
    """The overlay profile's disk size (if any) and its partition offset in sectors."""
    overlay = build.schematic.overlay
    if not overlay.name:
        return None, 0
    if build.profile.arch is not Arch.ARM64:
        raise InvalidInput(
            f"overlay {overlay.name!r} is for arm64 single-board computers, not {build.profile.arch}"
        )
    root = build.sources.overlay_tree(build.sources.overlay_entry(build.version, overlay.name))
    options = overlays.get_options(root, overlay.name, overlay.options)
    return overlays.profile_disk_size(root, overlay.name), options.partition_offset


def disk_size(build: Build) -> int:
    """The profile's size, or the overlay profile's diskSize grown as the imager grows its own."""
    profile = build.profile
    assert profile.disk_size is not None
    base, _ = _overlay_size_and_offset(build)
    if base is None:
        return profile.disk_size
    quirks = profile.quirks
    size = base + quirks.boot_size - 1000 * MIB
    if profile.bootloader is Bootloader.DUAL_BOOT:
        size += quirks.bios_size + quirks.boot_size
    return size


def raw_image(build: Build) -> Path:
    profile = build.profile
    assert profile.bootloader is not None and profile.sector_size is not None
    bootloader = profile.bootloader
    uses_uki = bootloader is not Bootloader.GRUB
    signer = build.signer()
    line = build.cmdline()
    values = profile.partition_meta()
    size = disk_size(build)
    _, offset = _overlay_size_and_offset(build)
    overlay = build.schematic.overlay
    parts: dict[str, Any] = {
        "imager": build.imager_digest(),
        "version": profile.version.tag,
        "arch": profile.arch.value,
        "bootloader": bootloader.value,
        "size": size,
        "sectorSize": profile.sector_size,
        "secureboot": profile.secureboot,
        "enroll": profile.enroll_keys.value if profile.enroll_keys else None,
        "cmdline": line,
        "meta": [[v.key, v.value] for v in values],
        "initramfs": str(build.initramfs()),
        "uki": str(build.uki()) if uses_uki else None,
        "overlay": [overlay.name, overlay.options, offset] if overlay.name else None,
        **build._signer_parts(),
    }
    if overlay.name:
        entry = build.sources.overlay_entry(build.version, overlay.name)
        parts["overlayDigest"] = entry["digest"]

    def make(out: Path) -> None:
        assets = build.assets()
        auth = None
        if signer is not None:
            auth = build.auth_files() or generate_auth_files(
                signer, out.parent / "auth", epoch=assets.epoch
            )
        install = None
        if overlay.name:
            root = build.sources.overlay_tree(
                build.sources.overlay_entry(build.version, overlay.name)
            )

            def install(disk: Path, prefix: Path) -> None:
                overlays.install(
                    root, overlay.name, overlay.options, disk=disk, mount_prefix=prefix
                )

        spec = DiskSpec(
            version=profile.version,
            arch=profile.arch,
            bootloader=bootloader,
            size=size,
            sector_size=profile.sector_size or SECTOR,
            epoch=assets.epoch,
            enroll=(profile.enroll_keys or EnrollKeys.IF_SAFE) if signer else EnrollKeys.OFF,
            signer=signer,
            auth=auth,
            skip_sectors=offset,
            overlay_install=install,
        )
        inputs = DiskInputs(
            kernel=assets.kernel,
            initramfs=build.initramfs(),
            cmdline=line,
            uki=build.uki() if uses_uki else None,
            sd_boot=assets.sd_boot if uses_uki else None,
            meta=meta.partition_image(values, profile.quirks.meta_size),
        )
        build_disk(out, spec, inputs)

    return build.cached("disk-raw", parts, "disk.raw", make)


def build_image(build: Build, out: Path) -> None:
    """The `image` kind: the raw image converted and compressed as the asset path says."""
    profile = build.profile
    assert profile.disk_format is not None
    raw = raw_image(build)
    finish(
        raw,
        out,
        disk_format=profile.disk_format,
        options=profile.disk_format_options,
        out_format=profile.out_format,
        epoch=build.assets().epoch,
    )
