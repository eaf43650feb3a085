"""The platform table: upstream's platforms, their kernel args, defaults and lookups."""

from __future__ import annotations

import dataclasses

import pytest

from imagefactory.errors import InvalidInput
from imagefactory.platforms import (
    PLATFORMS,
    Arch,
    BootMethod,
    DiskFormat,
    OutFormat,
    get_platform,
    platform_names,
)
from imagefactory.quirks import Quirks, quirks_for
from imagefactory.versions import TalosVersion

V = TalosVersion.parse

UPSTREAM = {
    "metal",
    "aws",
    "gcp",
    "equinixMetal",
    "azure",
    "digital-ocean",
    "nocloud",
    "openstack",
    "vmware",
    "akamai",
    "cloudstack",
    "hcloud",
    "oracle",
    "upcloud",
    "vultr",
    "exoscale",
    "opennebula",
    "scaleway",
    "alibabacloud",
}


def test_every_upstream_platform_once() -> None:
    assert set(platform_names()) == UPSTREAM
    assert len(platform_names()) == len(UPSTREAM)


def test_kernel_arg_conditions_name_boolean_quirks() -> None:
    flags = {f.name for f in dataclasses.fields(Quirks) if f.type in ("bool", bool)}
    for platform in PLATFORMS:
        every = list(platform.kernel_args)
        for args in platform.arch_kernel_args.values():
            every += args
        for arg in every:
            assert arg.when in flags | {""}, (platform.name, arg)


ARGS = [
    ("metal", "amd64", "1.7.0", "console=ttyS0 console=tty0"),
    ("metal", "amd64", "1.8.0", "console=tty0"),
    ("metal", "arm64", "1.7.0", "console=ttyAMA0 console=tty0"),
    ("aws", "amd64", "1.13.0", "console=tty1 console=ttyS0 net.ifnames=0"),
    (
        "aws",
        "arm64",
        "1.14.0",
        "console=tty1 console=ttyS0 net.ifnames=0 nvme_core.io_timeout=4294967295",
    ),
    (
        "azure",
        "amd64",
        "1.10.0",
        "console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1",
    ),
    (
        "gcp",
        "amd64",
        "1.10.0",
        "console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1",
    ),
    ("akamai", "amd64", "1.10.0", "console=ttyS0 console=tty0 console=tty1 net.ifnames=0"),
    ("digital-ocean", "amd64", "1.10.0", "console=ttyS0 console=tty0 console=tty1 net.ifnames=0"),
    ("equinixMetal", "amd64", "1.10.0", "console=ttyS1,115200n8"),
    ("equinixMetal", "arm64", "1.10.0", "console=ttyAMA0,115200"),
    (
        "oracle",
        "arm64",
        "1.10.0",
        "console=tty1 console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1",
    ),
    (
        "scaleway",
        "amd64",
        "1.10.0",
        "console=tty1 console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1",
    ),
    ("upcloud", "amd64", "1.10.0", "net.ifnames=0"),
    ("vultr", "amd64", "1.10.0", "net.ifnames=0"),
    (
        "vmware",
        "amd64",
        "1.10.0",
        "talos.config=guestinfo console=tty0 console=ttyS0 earlyprintk=ttyS0,115200 net.ifnames=0",
    ),
    (
        "vmware",
        "arm64",
        "1.10.0",
        "talos.config=guestinfo console=tty0 console=ttyAMA0 net.ifnames=0",
    ),
] + [
    (name, "amd64", "1.10.0", "console=tty1 console=ttyS0 net.ifnames=0")
    for name in (
        "alibabacloud",
        "cloudstack",
        "exoscale",
        "hcloud",
        "nocloud",
        "opennebula",
        "openstack",
    )
]


@pytest.mark.parametrize(("name", "arch", "version", "expected"), ARGS)
def test_kernel_args(name: str, arch: str, version: str, expected: str) -> None:
    assert " ".join(get_platform(name).kernel_args_for(arch, quirks_for(V(version)))) == expected


@pytest.mark.parametrize(
    ("name", "version", "suffix"),
    [
        ("metal", "1.7.0", "raw.xz"),
        ("metal", "1.8.0", "raw.zst"),
        ("aws", "1.7.6", "raw.xz"),
        ("aws", "1.8.0-alpha.1", "raw.zst"),
        ("azure", "1.7.0", "vhd.xz"),
        ("azure", "1.9.0", "vhd.zst"),
        ("gcp", "1.9.0", "raw.tar.gz"),
        ("digital-ocean", "1.9.0", "raw.gz"),
        ("akamai", "1.9.0", "raw.gz"),
        ("vmware", "1.9.0", "ova"),
        ("oracle", "1.7.0", "qcow2.xz"),
        ("exoscale", "1.9.0", "qcow2.zst"),
        ("alibabacloud", "1.14.0", "qcow2"),
    ],
)
def test_default_disk_image_suffix_follows_the_version(
    name: str, version: str, suffix: str
) -> None:
    assert get_platform(name).default_disk_image_suffix(V(version)) == suffix


def test_ui_table_facts() -> None:
    assert get_platform("equinixMetal").boot_methods == (BootMethod.PXE,)
    assert get_platform("vultr").boot_methods == (BootMethod.ISO, BootMethod.PXE)
    assert get_platform("vultr").ui_disk_image_suffix == ""
    assert get_platform("aws").ui_disk_image_suffix == "raw.xz"
    assert get_platform("digital-ocean").archs == (Arch.AMD64,)
    assert {p.name for p in PLATFORMS if p.secureboot} == {
        "metal",
        "azure",
        "nocloud",
        "cloudstack",
        "opennebula",
    }
    assert get_platform("metal").disk_image_path("amd64", "raw.zst", secureboot=True) == (
        "metal-amd64-secureboot.raw.zst"
    )


@pytest.mark.parametrize(
    ("name", "version", "supported"),
    [
        ("akamai", "1.6.7", False),
        ("akamai", "1.7.0", True),
        ("cloudstack", "1.8.0-alpha.1", False),
        ("cloudstack", "1.8.0-alpha.2", True),
        ("exoscale", "1.2.0", False),
        ("alibabacloud", "1.14.0-beta.1", False),
        ("alibabacloud", "1.14.0", True),
        ("metal", "1.0.0", True),
    ],
)
def test_minimum_versions_compare_full_semver(name: str, version: str, supported: bool) -> None:
    assert get_platform(name).supports(V(version)) is supported


def test_disk_defaults() -> None:
    assert get_platform("metal").disk_size_mib == 1246
    assert get_platform("aws").disk_size_mib == 8192
    assert get_platform("exoscale").disk_size_mib == 10240
    assert not get_platform("equinixMetal").has_profile
    assert get_platform("azure").disk_format is DiskFormat.VHD
    assert DiskFormat.VHD.qemu_format == "vpc"
    assert DiskFormat.QCOW2.qemu_format == "qcow2"
    assert OutFormat.TAR_GZ.suffix == ".tar.gz"
    assert OutFormat.RAW.suffix == ""


def test_lookup() -> None:
    assert get_platform("packet").name == "equinixMetal"
    with pytest.raises(InvalidInput, match=r'^unknown platform: "rpi_generic"$'):
        get_platform("rpi_generic")
    with pytest.raises(InvalidInput, match=r'^unknown platform: "a\\"b"$'):
        get_platform('a"b')
