"""Asset path grammar (upstream ParseFromPath) and the resolved build profile of one asset.

A path plus a Talos version (and optionally a schematic) resolve into a frozen `Profile`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from imagefactory.errors import InvalidInput
from imagefactory.gotext import go_quote
from imagefactory.platforms import (
    DEFAULT_RAW_DISK_MIB,
    Arch,
    DiskFormat,
    OutFormat,
    check_image_request,
    get_platform,
)
from imagefactory.quirks import Quirks, quirks_for
from imagefactory.schematic import Bootloader, MetaValue, Schematic
from imagefactory.units import MIB
from imagefactory.versions import TalosVersion

PARSE_ERROR = "error parsing profile from path"
DEFAULT_SECTOR_SIZE = 512
SECTOR_SIZES = (512, 4096)
QCOW2_OPTIONS = "cluster_size=8k"
# META key the imager sets itself on amd64 dual-boot disk images (meta.DiskImageBootloader).
DISK_IMAGE_BOOTLOADER_KEY = 0xE

# Checked in this order, first match wins (upstream cuts `.tar.gz` before `.gz`).
_OUT_FORMAT_SUFFIXES = (OutFormat.TAR_GZ, OutFormat.GZ, OutFormat.XZ, OutFormat.ZSTD)
_DISK_FORMAT_SUFFIXES = (DiskFormat.RAW, DiskFormat.QCOW2, DiskFormat.VHD, DiskFormat.OVA)
# iPXE's ${buildarch} names (https://ipxe.org/cfg/buildarch).
_ARCH_ALIASES = {"amd64": Arch.AMD64, "arm64": Arch.ARM64, "x86_64": Arch.AMD64, "i386": Arch.AMD64}


class OutputKind(enum.StrEnum):
    ISO = "iso"
    IMAGE = "image"
    INSTALLER = "installer"
    KERNEL = "kernel"
    INITRAMFS = "initramfs"
    UKI = "uki"
    CMDLINE = "cmdline"


class EnrollKeys(enum.StrEnum):
    """systemd-boot `secure-boot-enroll` in loader.conf."""

    IF_SAFE = "if-safe"
    MANUAL = "manual"
    FORCE = "force"
    OFF = "off"


@dataclass(frozen=True)
class AssetRequest:
    """What the path alone says, before the version and platform defaults are applied."""

    path: str
    kind: OutputKind
    platform: str
    arch: Arch
    secureboot: bool = False
    out_format: OutFormat = OutFormat.RAW
    disk_format: DiskFormat | None = None
    # `<platform>-installer-<arch>.tar` (unified installer) rather than `installer-<arch>.tar`.
    platform_installer: bool = False


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(f"{PARSE_ERROR}: {message}")


def parse_arch(text: str) -> Arch:
    arch = _ARCH_ALIASES.get(text)
    if arch is None:
        raise _invalid(f"invalid architecture: {go_quote(text)}")
    return arch


def _parse_platform_arch(text: str) -> tuple[str, Arch, bool]:
    secureboot = text.endswith("-secureboot")
    if secureboot:
        text = text.removesuffix("-secureboot")
    platform, sep, rest = text.partition("-")
    if not sep:
        raise _invalid(f"invalid platform-arch: {go_quote(text)}")
    # The one platform whose name has a dash.
    if platform == "digital" and rest.startswith("ocean-"):
        platform, rest = "digital-ocean", rest.removeprefix("ocean-")
    return platform, parse_arch(rest), secureboot


def parse_asset_path(path: str) -> AssetRequest:
    """The upstream grammar, checked in upstream's order; anything else is a disk image."""
    if path.startswith("kernel-"):
        return AssetRequest(path, OutputKind.KERNEL, "metal", parse_arch(path[len("kernel-") :]))
    if path.startswith("cmdline-"):
        platform, arch, sb = _parse_platform_arch(path[len("cmdline-") :])
        return AssetRequest(path, OutputKind.CMDLINE, platform, arch, sb)
    if path.startswith("initramfs-") and path.endswith(".xz"):
        arch = parse_arch(path[len("initramfs-") : -len(".xz")])
        return AssetRequest(path, OutputKind.INITRAMFS, "metal", arch)
    if path.endswith(".iso"):
        platform, arch, sb = _parse_platform_arch(path.removesuffix(".iso"))
        return AssetRequest(path, OutputKind.ISO, platform, arch, sb)
    if path.endswith("-uki.efi"):
        platform, arch, sb = _parse_platform_arch(path.removesuffix("-uki.efi"))
        return AssetRequest(path, OutputKind.UKI, platform, arch, sb)
    if path.startswith("installer-") and path.endswith(".tar"):
        rest = path[len("installer-") : -len(".tar")]
        sb = rest.endswith("-secureboot")
        arch = parse_arch(rest.removesuffix("-secureboot"))
        return AssetRequest(path, OutputKind.INSTALLER, "metal", arch, sb)
    platform, sep, rest = path.partition("-installer-")
    if sep and rest.endswith(".tar"):
        platform, arch, sb = _parse_platform_arch(f"{platform}-{rest.removesuffix('.tar')}")
        return AssetRequest(path, OutputKind.INSTALLER, platform, arch, sb, platform_installer=True)
    return _parse_disk_image(path)


def _parse_disk_image(path: str) -> AssetRequest:
    rest = path
    out_format = OutFormat.RAW
    for candidate in _OUT_FORMAT_SUFFIXES:
        if rest.endswith(candidate.suffix):
            rest, out_format = rest.removesuffix(candidate.suffix), candidate
            break
    for disk_format in _DISK_FORMAT_SUFFIXES:
        if rest.endswith(f".{disk_format.value}"):
            rest = rest.removesuffix(f".{disk_format.value}")
            break
    else:
        # Upstream quotes what is left after cutting the compression suffix.
        raise _invalid(f"invalid profile path: {go_quote(rest)}")
    platform, arch, sb = _parse_platform_arch(rest)
    return AssetRequest(path, OutputKind.IMAGE, platform, arch, sb, out_format, disk_format)


@dataclass(frozen=True)
class Profile:
    """Everything a builder needs to know about one asset of one schematic and version."""

    asset_path: str
    version: TalosVersion
    kind: OutputKind
    platform: str
    arch: Arch
    secureboot: bool
    out_format: OutFormat
    disk_format: DiskFormat | None = None
    disk_format_options: str = ""
    disk_size: int | None = None
    sector_size: int | None = None
    bootloader: Bootloader | None = None
    enroll_keys: EnrollKeys | None = None
    platform_installer: bool = False
    # What upstream's EnhanceFromSchematic passes on for this kind of output.
    extra_kernel_args: tuple[str, ...] = ()
    meta: tuple[MetaValue, ...] = ()

    @property
    def quirks(self) -> Quirks:
        return quirks_for(self.version)

    @property
    def canonical_path(self) -> str:
        """The asset path with aliases resolved (x86_64 -> amd64, packet -> equinixMetal)."""
        sb = "-secureboot" if self.secureboot else ""
        match self.kind:
            case OutputKind.KERNEL:
                return f"kernel-{self.arch}"
            case OutputKind.INITRAMFS:
                return f"initramfs-{self.arch}.xz"
            case OutputKind.CMDLINE:
                return f"cmdline-{self.platform}-{self.arch}{sb}"
            case OutputKind.ISO:
                return f"{self.platform}-{self.arch}{sb}.iso"
            case OutputKind.UKI:
                return f"{self.platform}-{self.arch}{sb}-uki.efi"
            case OutputKind.INSTALLER:
                prefix = f"{self.platform}-" if self.platform_installer else ""
                return f"{prefix}installer-{self.arch}{sb}.tar"
            case OutputKind.IMAGE:
                assert self.disk_format is not None
                return f"{self.platform}-{self.arch}{sb}.{self.disk_format}{self.out_format.suffix}"

    @property
    def needs_uki(self) -> bool:
        """Whether the build makes a UKI first (upstream Execute step 4)."""
        if self.kind is OutputKind.UKI:
            return True
        if self.kind in (OutputKind.ISO, OutputKind.INSTALLER, OutputKind.IMAGE):
            return self.quirks.uki or self.quirks.sd_boot_for_uefi
        return False

    @property
    def meta_on_cmdline(self) -> bool:
        """META goes into `talos.environment` for every output except a disk image."""
        return bool(self.meta) and self.kind is not OutputKind.IMAGE

    def partition_meta(self) -> tuple[MetaValue, ...]:
        """What the disk image's META partition holds, including the imager's own bootloader key."""
        if self.kind is not OutputKind.IMAGE:
            return ()
        values = self.meta
        if (
            self.arch is Arch.AMD64
            and not self.secureboot
            and self.quirks.sd_boot_for_uefi
            and self.bootloader is Bootloader.DUAL_BOOT
        ):
            values = (*values, MetaValue(DISK_IMAGE_BOOTLOADER_KEY, Bootloader.DUAL_BOOT.value))
        return values

    def to_json(self) -> dict[str, Any]:
        return {
            "asset_path": self.asset_path,
            "canonical_path": self.canonical_path,
            "version": self.version.tag,
            "kind": self.kind.value,
            "platform": self.platform,
            "arch": self.arch.value,
            "secureboot": self.secureboot,
            "out_format": self.out_format.value,
            "disk_format": self.disk_format.value if self.disk_format else None,
            "disk_format_options": self.disk_format_options or None,
            "disk_size": self.disk_size,
            "sector_size": self.sector_size,
            "bootloader": self.bootloader.value if self.bootloader else None,
            "enroll_keys": self.enroll_keys.value if self.enroll_keys else None,
            "needs_uki": self.needs_uki,
            "extra_kernel_args": list(self.extra_kernel_args),
            "meta": [{"key": value.key, "value": value.value} for value in self.meta],
        }


def resolve(path: str, version: TalosVersion, schematic: Schematic | None = None) -> Profile:
    """Parse an asset path and resolve it for a Talos version (and schematic).

    A disk image the platform does not have (arch, version, format) is refused here, where a user
    names it; `request_for` callers ask for the platform's own defaults.
    """
    request = parse_asset_path(path)
    if request.kind is OutputKind.IMAGE:
        _check_image(request, schematic or Schematic())
    return resolve_request(request, version, schematic)


def _check_image(request: AssetRequest, schematic: Schematic) -> None:
    assert request.disk_format is not None
    check_image_request(get_platform(request.platform), request.arch, request.disk_format)
    overlay = schematic.overlay.name
    if overlay and request.arch is not Arch.ARM64:
        raise InvalidInput(f"overlay {overlay} is not supported for architecture {request.arch}")


def request_for(
    kind: OutputKind,
    platform: str,
    arch: str,
    version: TalosVersion,
    *,
    secureboot: bool = False,
) -> AssetRequest:
    """The request for a kind's canonical asset, e.g. the platform's default disk image."""
    row = get_platform(platform)
    image = kind is OutputKind.IMAGE
    return AssetRequest(
        "",
        kind,
        row.name,
        parse_arch(arch),
        secureboot,
        row.default_out_format(version) if image else OutFormat.RAW,
        row.disk_format if image else None,
        platform_installer=kind is OutputKind.INSTALLER and row.name != "metal",
    )


def resolve_request(
    request: AssetRequest, version: TalosVersion, schematic: Schematic | None = None
) -> Profile:
    schematic = schematic or Schematic()
    quirks = quirks_for(version)
    _check_supported(request, version, quirks, schematic)
    profile = _resolve(request, version, quirks, schematic)
    return profile if profile.asset_path else replace(profile, asset_path=profile.canonical_path)


def _resolve(
    request: AssetRequest, version: TalosVersion, quirks: Quirks, schematic: Schematic
) -> Profile:
    custom = schematic.customization
    platform = get_platform(request.platform)
    kind = request.kind
    args, meta = _customization(kind, request.secureboot, schematic)
    enroll = _enroll_keys(custom.secureboot.enroll_keys) if request.secureboot else None
    common: dict[str, Any] = {
        "asset_path": request.path,
        "version": version,
        "kind": kind,
        "platform": platform.name,
        "arch": request.arch,
        "secureboot": request.secureboot,
        "out_format": request.out_format,
        "platform_installer": request.platform_installer,
        "extra_kernel_args": args,
        "meta": meta,
    }
    if kind is OutputKind.ISO:
        bootloader = quirks.iso_bootloader(
            request.arch, secureboot=request.secureboot, requested=custom.bootloader
        )
        return Profile(**common, bootloader=bootloader, enroll_keys=enroll)
    if kind is not OutputKind.IMAGE:
        return Profile(**common)

    assert request.disk_format is not None
    bootloader = quirks.disk_bootloader(
        request.arch, secureboot=request.secureboot, requested=custom.bootloader
    )
    base_mib = platform.disk_size_mib if platform.has_profile else DEFAULT_RAW_DISK_MIB
    # The imager grows the image by the BOOT growth, and by BIOS + BOOT for dual-boot.
    size = base_mib * MIB + quirks.boot_size - 1000 * MIB
    if bootloader is Bootloader.DUAL_BOOT:
        size += quirks.bios_size + quirks.boot_size
    sector_size = custom.disk_image.sector_size or DEFAULT_SECTOR_SIZE
    if sector_size not in SECTOR_SIZES:
        raise InvalidInput(f"unsupported disk image sector size {sector_size} (512 or 4096)")
    return Profile(
        **common,
        disk_format=request.disk_format,
        disk_format_options=_disk_format_options(request.disk_format, platform.name),
        disk_size=size,
        sector_size=sector_size,
        bootloader=bootloader,
        enroll_keys=enroll,
    )


def _disk_format_options(disk_format: DiskFormat, platform_name: str) -> str:
    # Upstream copies the platform's default options whatever format was asked for, so that
    # e.g. azure-amd64.qcow2 hands `subformat=fixed,force_size` to qemu-img and fails; we only
    # take them when the format is the platform's own.
    platform = get_platform(platform_name)
    if (
        platform.has_profile
        and platform.disk_format_options
        and platform.disk_format == disk_format
    ):
        return platform.disk_format_options
    return QCOW2_OPTIONS if disk_format is DiskFormat.QCOW2 else ""


def _check_supported(
    request: AssetRequest, version: TalosVersion, quirks: Quirks, schematic: Schematic
) -> None:
    custom = schematic.customization
    if request.secureboot and not quirks.uki:
        raise InvalidInput(f'secureboot is not supported for Talos version "{version.tag}"')
    if request.kind is OutputKind.UKI and not quirks.uki:
        raise InvalidInput("UKI output is not supported in this Talos version")
    if (
        custom.embedded_machine_configuration
        and request.kind not in (OutputKind.CMDLINE, OutputKind.KERNEL)
        and not quirks.embedded_config
    ):
        raise InvalidInput(
            f"embedding configuration is not supported for Talos version {version.tag}"
        )
    if schematic.overlay.name and not quirks.overlays:
        raise InvalidInput(f"overlay is not supported for Talos version {version.tag}")


def _customization(
    kind: OutputKind, secureboot: bool, schematic: Schematic
) -> tuple[tuple[str, ...], tuple[MetaValue, ...]]:
    """Which schematic kernel args and META reach the imager for this kind (EnhanceFromSchematic).

    Kernel and initramfs carry neither; a non-Secure-Boot installer neither (its kernel and
    initramfs take no command line); a Secure Boot installer the args only (META is written at
    install time); every other kind, the UKI included, both.
    """
    custom = schematic.customization
    if kind in (OutputKind.KERNEL, OutputKind.INITRAMFS):
        return (), ()
    if kind is OutputKind.INSTALLER:
        return (custom.extra_kernel_args if secureboot else ()), ()
    return custom.extra_kernel_args, custom.meta


def _enroll_keys(text: str) -> EnrollKeys:
    if not text:
        return EnrollKeys.IF_SAFE
    try:
        return EnrollKeys(text)
    except ValueError:
        raise InvalidInput(
            f"invalid secureboot enrollKeys value {go_quote(text)}: "
            f"{text} does not belong to SDBootEnrollKeys values"
        ) from None
