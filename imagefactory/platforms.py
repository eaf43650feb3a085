"""The platform table: every Talos platform the factory builds for, declared once.

Merges upstream's UI metadata (machinery/platforms), imager default profiles and per-platform kernel args.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from imagefactory.errors import InvalidInput
from imagefactory.gotext import go_quote
from imagefactory.quirks import Compression, Quirks, quirks_for
from imagefactory.versions import TalosVersion

MIN_RAW_DISK_MIB = 1246
DEFAULT_RAW_DISK_MIB = 8192


class Arch(enum.StrEnum):
    AMD64 = "amd64"
    ARM64 = "arm64"

    @property
    def efi_suffix(self) -> str:
        """UEFI's name for the arch in file names: BOOTX64.EFI, systemd-bootaa64.efi."""
        return "x64" if self is Arch.AMD64 else "aa64"


class BootMethod(enum.StrEnum):
    DISK_IMAGE = "disk-image"
    ISO = "iso"
    PXE = "pxe"


class DiskFormat(enum.StrEnum):
    RAW = "raw"
    QCOW2 = "qcow2"
    VHD = "vhd"
    OVA = "ova"

    @property
    def qemu_format(self) -> str:
        """The `qemu-img -O` name; VHD is qemu's "vpc"."""
        return "vpc" if self is DiskFormat.VHD else self.value


class OutFormat(enum.StrEnum):
    """What is done to the output file at the end; the value is the file suffix without the dot."""

    RAW = "raw"
    TAR_GZ = "tar.gz"
    XZ = "xz"
    GZ = "gz"
    ZSTD = "zst"

    @property
    def suffix(self) -> str:
        return "" if self is OutFormat.RAW else f".{self.value}"


@dataclass(frozen=True)
class KernelArg:
    """One platform kernel argument, present only while the named `Quirks` flag is true."""

    text: str
    when: str = ""

    def applies(self, quirks: Quirks) -> bool:
        return not self.when or bool(getattr(quirks, self.when))


def _args(*items: str | KernelArg) -> tuple[KernelArg, ...]:
    return tuple(item if isinstance(item, KernelArg) else KernelArg(item) for item in items)


BOTH = (Arch.AMD64, Arch.ARM64)
AMD64_ONLY = (Arch.AMD64,)

_TTY1_TTYS0 = _args("console=tty1", "console=ttyS0", "net.ifnames=0")
_DASHBOARD_OFF = "talos.dashboard.disabled=1"
_NO_KEXEC = "sysctl.kernel.kexec_load_disabled=1"


@dataclass(frozen=True)
class Platform:
    name: str
    label: str
    archs: tuple[Arch, ...]
    boot_methods: tuple[BootMethod, ...]
    kernel_args: tuple[KernelArg, ...] = ()
    # Per-arch overrides of kernel_args (metal, vmware, equinixMetal differ per arch).
    arch_kernel_args: dict[str, tuple[KernelArg, ...]] = field(default_factory=dict)
    secureboot: bool = False
    min_version: TalosVersion | None = None
    # The imager's default profile for the platform, if it has one.
    has_profile: bool = True
    disk_size_mib: int = DEFAULT_RAW_DISK_MIB
    disk_format: DiskFormat = DiskFormat.RAW
    disk_format_options: str = ""
    # ZSTD here means "the imager's default compression", which is .xz before 1.8.
    out_format: OutFormat = OutFormat.ZSTD
    # The default download the upstream UI links (fixed text, not version dependent).
    ui_disk_image_suffix: str = ""

    def supports(self, version: TalosVersion) -> bool:
        return self.min_version is None or version >= self.min_version

    def kernel_args_for(self, arch: str, quirks: Quirks) -> tuple[str, ...]:
        # Platforms with per-arch args have none for an arch they don't know, like upstream.
        args = self.arch_kernel_args.get(arch, ()) if self.arch_kernel_args else self.kernel_args
        return tuple(arg.text for arg in args if arg.applies(quirks))

    def default_out_format(self, version: TalosVersion) -> OutFormat:
        if self.out_format is OutFormat.ZSTD and quirks_for(version).compression is Compression.XZ:
            return OutFormat.XZ
        return self.out_format

    def default_disk_image_suffix(self, version: TalosVersion) -> str:
        """The imager default profile's output suffix for this version, e.g. `raw.zst`."""
        return f"{self.disk_format.value}{self.default_out_format(version).suffix}"

    def disk_image_path(self, arch: str, suffix: str, *, secureboot: bool = False) -> str:
        return f"{self.name}-{arch}{'-secureboot' if secureboot else ''}.{suffix}"


PLATFORMS: tuple[Platform, ...] = (
    Platform(
        name="metal",
        label="Bare Metal",
        archs=BOTH,
        boot_methods=(BootMethod.ISO, BootMethod.DISK_IMAGE, BootMethod.PXE),
        arch_kernel_args={
            Arch.AMD64: _args(
                KernelArg("console=ttyS0", when="metal_console_ttys0"), "console=tty0"
            ),
            Arch.ARM64: _args("console=ttyAMA0", "console=tty0"),
        },
        secureboot=True,
        disk_size_mib=MIN_RAW_DISK_MIB,
        ui_disk_image_suffix="raw.zst",
    ),
    Platform(
        name="aws",
        label="Amazon Web Services (AWS)",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=(
            *_TTY1_TTYS0,
            KernelArg("nvme_core.io_timeout=4294967295", when="nvme_timeout_aws_only"),
        ),
        ui_disk_image_suffix="raw.xz",
    ),
    Platform(
        name="gcp",
        label="Google Cloud (GCP)",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=_args("console=ttyS0", "net.ifnames=0", _DASHBOARD_OFF, _NO_KEXEC),
        out_format=OutFormat.TAR_GZ,
        ui_disk_image_suffix="raw.tar.gz",
    ),
    Platform(
        name="equinixMetal",
        label="Equinix Metal",
        archs=BOTH,
        boot_methods=(BootMethod.PXE,),
        arch_kernel_args={
            Arch.AMD64: _args("console=ttyS1,115200n8"),
            Arch.ARM64: _args("console=ttyAMA0,115200"),
        },
        has_profile=False,
    ),
    Platform(
        name="azure",
        label="Microsoft Azure",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=_args(
            "console=ttyS0,115200n8",
            "earlyprintk=ttyS0,115200",
            "rootdelay=300",
            "net.ifnames=0",
            _DASHBOARD_OFF,
            _NO_KEXEC,
        ),
        secureboot=True,
        disk_format=DiskFormat.VHD,
        disk_format_options="subformat=fixed,force_size",
        ui_disk_image_suffix="vhd.xz",
    ),
    Platform(
        name="digital-ocean",
        label="Digital Ocean",
        archs=AMD64_ONLY,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=_args("console=ttyS0", "console=tty0", "console=tty1", "net.ifnames=0"),
        out_format=OutFormat.GZ,
        ui_disk_image_suffix="raw.gz",
    ),
    Platform(
        name="nocloud",
        label="Nocloud",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE, BootMethod.ISO, BootMethod.PXE),
        kernel_args=_TTY1_TTYS0,
        secureboot=True,
        disk_size_mib=MIN_RAW_DISK_MIB,
        ui_disk_image_suffix="raw.xz",
    ),
    Platform(
        name="openstack",
        label="OpenStack",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE, BootMethod.ISO, BootMethod.PXE),
        kernel_args=_TTY1_TTYS0,
        disk_size_mib=MIN_RAW_DISK_MIB,
        ui_disk_image_suffix="raw.xz",
    ),
    Platform(
        name="vmware",
        label="VMWare",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE, BootMethod.ISO),
        arch_kernel_args={
            Arch.AMD64: _args(
                "talos.config=guestinfo",
                "console=tty0",
                "console=ttyS0",
                "earlyprintk=ttyS0,115200",
                "net.ifnames=0",
            ),
            Arch.ARM64: _args(
                "talos.config=guestinfo", "console=tty0", "console=ttyAMA0", "net.ifnames=0"
            ),
        },
        disk_format=DiskFormat.OVA,
        out_format=OutFormat.RAW,
        ui_disk_image_suffix="ova",
    ),
    Platform(
        name="akamai",
        label="Akamai",
        archs=AMD64_ONLY,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=_args("console=ttyS0", "console=tty0", "console=tty1", "net.ifnames=0"),
        min_version=TalosVersion.parse("1.7.0"),
        disk_size_mib=MIN_RAW_DISK_MIB,
        out_format=OutFormat.GZ,
        ui_disk_image_suffix="raw.gz",
    ),
    Platform(
        name="cloudstack",
        label="Apache CloudStack",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=_TTY1_TTYS0,
        secureboot=True,
        min_version=TalosVersion.parse("1.8.0-alpha.2"),
        ui_disk_image_suffix="raw.gz",
    ),
    Platform(
        name="hcloud",
        label="Hetzner",
        archs=AMD64_ONLY,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=_TTY1_TTYS0,
        disk_size_mib=MIN_RAW_DISK_MIB,
        ui_disk_image_suffix="raw.xz",
    ),
    Platform(
        name="oracle",
        label="Oracle Cloud",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=(*_TTY1_TTYS0, KernelArg(_DASHBOARD_OFF)),
        disk_format=DiskFormat.QCOW2,
        disk_format_options="cluster_size=8k",
        ui_disk_image_suffix="qcow2",
    ),
    Platform(
        name="upcloud",
        label="UpCloud",
        archs=AMD64_ONLY,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=_args("net.ifnames=0"),
        ui_disk_image_suffix="raw.xz",
    ),
    Platform(
        name="vultr",
        label="Vultr",
        archs=AMD64_ONLY,
        boot_methods=(BootMethod.ISO, BootMethod.PXE),
        kernel_args=_args("net.ifnames=0"),
    ),
    Platform(
        name="exoscale",
        label="Exoscale",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=_TTY1_TTYS0,
        min_version=TalosVersion.parse("1.3.0"),
        disk_size_mib=10 * 1024,
        disk_format=DiskFormat.QCOW2,
        disk_format_options="cluster_size=8k",
        ui_disk_image_suffix="qcow2",
    ),
    Platform(
        name="opennebula",
        label="OpenNebula",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE, BootMethod.ISO),
        kernel_args=_TTY1_TTYS0,
        secureboot=True,
        min_version=TalosVersion.parse("1.7.0"),
        disk_size_mib=MIN_RAW_DISK_MIB,
        ui_disk_image_suffix="raw.zst",
    ),
    Platform(
        name="scaleway",
        label="Scaleway",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE, BootMethod.ISO),
        kernel_args=(*_TTY1_TTYS0, KernelArg(_DASHBOARD_OFF)),
        disk_size_mib=MIN_RAW_DISK_MIB,
        ui_disk_image_suffix="raw.zst",
    ),
    Platform(
        name="alibabacloud",
        label="AlibabaCloud",
        archs=BOTH,
        boot_methods=(BootMethod.DISK_IMAGE,),
        kernel_args=_TTY1_TTYS0,
        min_version=TalosVersion.parse("1.14.0-beta.2"),
        disk_size_mib=MIN_RAW_DISK_MIB,
        disk_format=DiskFormat.QCOW2,
        disk_format_options="cluster_size=8k",
        out_format=OutFormat.RAW,
        ui_disk_image_suffix="qcow2",
    ),
)

_BY_NAME = {platform.name: platform for platform in PLATFORMS}
# Talos still accepts the old Equinix Metal name and reports the new one.
ALIASES = {"packet": "equinixMetal"}


def get_platform(name: str) -> Platform:
    platform = _BY_NAME.get(ALIASES.get(name, name))
    if platform is None:
        raise InvalidInput(f"unknown platform: {go_quote(name)}")
    return platform


def platform_names() -> tuple[str, ...]:
    return tuple(platform.name for platform in PLATFORMS)


# Disk formats every platform offers; ova (a VMware appliance) only where it is the own format.
_COMMON_DISK_FORMATS = (DiskFormat.RAW, DiskFormat.QCOW2, DiskFormat.VHD)


def check_image_request(platform: Platform, arch: str, disk_format: DiskFormat) -> None:
    """Refuse a disk image of an arch or format the platform does not have.

    Versions before a platform's `min_version` still build, as upstream's do: the minimum only
    leaves the platform out of `assets_for`.
    """
    if arch not in platform.archs:
        raise InvalidInput(f"platform {platform.name} is not supported for architecture {arch}")
    if disk_format not in (*_COMMON_DISK_FORMATS, platform.disk_format):
        raise InvalidInput(f"platform {platform.name} does not offer {disk_format} disk images")


def assets_for(
    platform_name: str, arch: str, version: TalosVersion, *, secureboot: bool = False
) -> tuple[str, ...]:
    """Every upstream asset path the platform offers for this arch and version (boot methods)."""
    platform = get_platform(platform_name)
    quirks = quirks_for(version)
    if not platform.supports(version) or arch not in platform.archs:
        return ()
    if secureboot and not (platform.secureboot and quirks.uki):
        return ()
    sb = "-secureboot" if secureboot else ""
    paths: list[str] = []
    if BootMethod.DISK_IMAGE in platform.boot_methods and platform.has_profile:
        paths.append(
            platform.disk_image_path(
                arch, platform.default_disk_image_suffix(version), secureboot=secureboot
            )
        )
    if BootMethod.ISO in platform.boot_methods:
        paths.append(f"{platform.name}-{arch}{sb}.iso")
    if BootMethod.PXE in platform.boot_methods:
        paths.append(f"cmdline-{platform.name}-{arch}{sb}")
        if secureboot:
            paths.append(f"{platform.name}-{arch}{sb}-uki.efi")
        else:
            paths += [f"kernel-{arch}", f"initramfs-{arch}.xz"]
    if platform.name == "metal":
        paths.append(f"installer-{arch}{sb}.tar")
    return tuple(dict.fromkeys(paths))
