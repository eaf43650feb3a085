"""Asset path grammar (good and bad tables) and profile resolution: sizes, bootloaders, options."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.errors import InvalidInput
from imagefactory.platforms import Arch, DiskFormat, OutFormat, platform_names
from imagefactory.profile import (
    AssetRequest,
    EnrollKeys,
    OutputKind,
    parse_asset_path,
    request_for,
    resolve,
    resolve_request,
)
from imagefactory.schematic import (
    Bootloader,
    Customization,
    DiskImage,
    MetaValue,
    Schematic,
    SecureBoot,
)
from imagefactory.versions import TalosVersion

V = TalosVersion.parse
MIB = 1024 * 1024
K, C, INI, ISO, UKI, INS, IMG = (
    OutputKind.KERNEL,
    OutputKind.CMDLINE,
    OutputKind.INITRAMFS,
    OutputKind.ISO,
    OutputKind.UKI,
    OutputKind.INSTALLER,
    OutputKind.IMAGE,
)
AMD, ARM = Arch.AMD64, Arch.ARM64

# path -> (kind, platform, arch, secureboot, out format, disk format, platform installer)
GOOD = [
    ("kernel-amd64", K, "metal", AMD, False, OutFormat.RAW, None, False),
    ("kernel-arm64", K, "metal", ARM, False, OutFormat.RAW, None, False),
    ("kernel-x86_64", K, "metal", AMD, False, OutFormat.RAW, None, False),
    ("kernel-i386", K, "metal", AMD, False, OutFormat.RAW, None, False),
    ("cmdline-metal-arm64", C, "metal", ARM, False, OutFormat.RAW, None, False),
    ("cmdline-aws-amd64-secureboot", C, "aws", AMD, True, OutFormat.RAW, None, False),
    ("cmdline-digital-ocean-amd64", C, "digital-ocean", AMD, False, OutFormat.RAW, None, False),
    ("cmdline-metal-x86_64", C, "metal", AMD, False, OutFormat.RAW, None, False),
    ("initramfs-amd64.xz", INI, "metal", AMD, False, OutFormat.RAW, None, False),
    ("metal-arm64-secureboot.iso", ISO, "metal", ARM, True, OutFormat.RAW, None, False),
    ("vultr-amd64.iso", ISO, "vultr", AMD, False, OutFormat.RAW, None, False),
    ("metal-amd64-secureboot-uki.efi", UKI, "metal", AMD, True, OutFormat.RAW, None, False),
    ("metal-amd64-uki.efi", UKI, "metal", AMD, False, OutFormat.RAW, None, False),
    ("installer-amd64.tar", INS, "metal", AMD, False, OutFormat.RAW, None, False),
    ("installer-arm64-secureboot.tar", INS, "metal", ARM, True, OutFormat.RAW, None, False),
    ("metal-installer-amd64.tar", INS, "metal", AMD, False, OutFormat.RAW, None, True),
    (
        "digital-ocean-installer-amd64.tar",
        INS,
        "digital-ocean",
        AMD,
        False,
        OutFormat.RAW,
        None,
        True,
    ),
    ("aws-installer-arm64-secureboot.tar", INS, "aws", ARM, True, OutFormat.RAW, None, True),
    ("metal-arm64.raw.xz", IMG, "metal", ARM, False, OutFormat.XZ, DiskFormat.RAW, False),
    ("metal-arm64.raw.zst", IMG, "metal", ARM, False, OutFormat.ZSTD, DiskFormat.RAW, False),
    ("metal-amd64.raw", IMG, "metal", AMD, False, OutFormat.RAW, DiskFormat.RAW, False),
    (
        "aws-amd64-secureboot.qcow2.tar.gz",
        IMG,
        "aws",
        AMD,
        True,
        OutFormat.TAR_GZ,
        DiskFormat.QCOW2,
        False,
    ),
    ("azure-amd64.vhd", IMG, "azure", AMD, False, OutFormat.RAW, DiskFormat.VHD, False),
    ("azure-amd64.vhd.xz", IMG, "azure", AMD, False, OutFormat.XZ, DiskFormat.VHD, False),
    (
        "digital-ocean-amd64.raw.gz",
        IMG,
        "digital-ocean",
        AMD,
        False,
        OutFormat.GZ,
        DiskFormat.RAW,
        False,
    ),
    ("gcp-amd64.raw.tar.gz", IMG, "gcp", AMD, False, OutFormat.TAR_GZ, DiskFormat.RAW, False),
    ("vmware-amd64.ova", IMG, "vmware", AMD, False, OutFormat.RAW, DiskFormat.OVA, False),
    ("oracle-arm64.qcow2.zst", IMG, "oracle", ARM, False, OutFormat.ZSTD, DiskFormat.QCOW2, False),
    # `initramfs-` without `.xz` is not an initramfs: it falls through to the disk image grammar.
    ("initramfs-amd64.raw", IMG, "initramfs", AMD, False, OutFormat.RAW, DiskFormat.RAW, False),
]


Row = tuple[str, OutputKind, str, Arch, bool, OutFormat, DiskFormat | None, bool]


@pytest.mark.parametrize("row", GOOD, ids=[row[0] for row in GOOD])
def test_grammar_good(row: Row) -> None:
    path, kind, platform, arch, sb, out, disk, pinst = row
    assert parse_asset_path(path) == AssetRequest(path, kind, platform, arch, sb, out, disk, pinst)


BAD = [
    ("metal-amd64.ssd", 'invalid profile path: "metal-amd64.ssd"'),
    ("metal-amd64.ssd.xz", 'invalid profile path: "metal-amd64.ssd"'),
    ("metal-amd64", 'invalid profile path: "metal-amd64"'),
    ("", 'invalid profile path: ""'),
    ("kernel-foo", 'invalid architecture: "foo"'),
    ("kernel-amd64-secureboot", 'invalid architecture: "amd64-secureboot"'),
    ("metal-rpi_generic-arm64.raw.xz", 'invalid architecture: "rpi_generic-arm64"'),
    ("initramfs-riscv64.xz", 'invalid architecture: "riscv64"'),
    ("installer-amd64-foo.tar", 'invalid architecture: "amd64-foo"'),
    ("cmdline-metal", 'invalid platform-arch: "metal"'),
    ("cmdline-metal-secureboot", 'invalid platform-arch: "metal"'),
    ("metal.iso", 'invalid platform-arch: "metal"'),
    ("metal-uki.efi", 'invalid platform-arch: "metal"'),
    ("-uki.efi", 'invalid platform-arch: ""'),
    ("metal.raw.xz", 'invalid platform-arch: "metal"'),
    ("metal-amd64.raw.bz2", 'invalid profile path: "metal-amd64.raw.bz2"'),
    ('a"b-amd64.rawx', 'invalid profile path: "a\\"b-amd64.rawx"'),
    ("cmdline-metal-amd64\n", 'invalid architecture: "amd64\\n"'),
]


@pytest.mark.parametrize(("path", "message"), BAD)
def test_grammar_bad(path: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_asset_path(path)
    assert str(info.value) == f"error parsing profile from path: {message}"


@given(st.text(max_size=40))
def test_grammar_never_crashes(path: str) -> None:
    try:
        request = parse_asset_path(path)
    except InvalidInput as exc:
        assert str(exc).startswith("error parsing profile from path: ")
    else:
        assert request.path == path
        assert request.arch in (Arch.AMD64, Arch.ARM64)


@pytest.mark.parametrize(
    ("path", "version", "size_bytes", "bootloader"),
    [
        # The reference's check figures.
        ("metal-amd64.raw.zst", "1.9.0", 1306525696, Bootloader.GRUB),
        ("metal-amd64.raw.zst", "1.11.0", 4453302272, Bootloader.DUAL_BOOT),
        ("metal-arm64.raw.zst", "1.11.0", 2355101696, Bootloader.SD_BOOT),
        ("aws-amd64.raw.zst", "1.11.0", 11736711168, Bootloader.DUAL_BOOT),
        # Around the boundaries: 1.10 dual-boot with the old BOOT size, pre-releases.
        ("metal-amd64.raw.xz", "1.10.0", (1246 + 1 + 1000) * MIB, Bootloader.DUAL_BOOT),
        ("metal-arm64.raw.xz", "1.10.0", 1246 * MIB, Bootloader.SD_BOOT),
        ("metal-amd64.raw.zst", "1.11.0-alpha.1", 4453302272, Bootloader.DUAL_BOOT),
        ("metal-amd64-secureboot.raw.zst", "1.11.0", 2246 * MIB, Bootloader.SD_BOOT),
        ("exoscale-amd64.qcow2", "1.9.0", 10240 * MIB, Bootloader.GRUB),
        # No default profile: upstream's 8192 MiB.
        ("equinixMetal-amd64.raw.xz", "1.9.0", 8192 * MIB, Bootloader.GRUB),
        ("hcloud-amd64.raw.xz", "1.9.0", 1246 * MIB, Bootloader.GRUB),
    ],
)
def test_disk_size_and_bootloader(
    path: str, version: str, size_bytes: int, bootloader: Bootloader
) -> None:
    profile = resolve(path, V(version))
    assert profile.disk_size == size_bytes
    assert profile.bootloader is bootloader
    assert profile.sector_size == 512


def test_schematic_bootloader_and_sector_size() -> None:
    schematic = Schematic(
        customization=Customization(bootloader=Bootloader.GRUB, disk_image=DiskImage(4096))
    )
    image = resolve("metal-amd64.raw.zst", V("1.12.0"), schematic)
    assert image.bootloader is Bootloader.GRUB
    assert image.disk_size == (1246 + 1000) * MIB
    assert image.sector_size == 4096
    iso = resolve("metal-amd64.iso", V("1.12.0"), schematic)
    assert iso.bootloader is Bootloader.GRUB
    assert iso.sector_size is None
    # Before 1.12 the ISO flavour is fixed.
    assert resolve("metal-amd64.iso", V("1.11.0"), schematic).bootloader is Bootloader.DUAL_BOOT
    assert resolve("metal-amd64.iso", V("1.9.0")).bootloader is Bootloader.GRUB
    sb = resolve("metal-amd64-secureboot.raw.zst", V("1.12.0"), schematic)
    assert sb.bootloader is Bootloader.SD_BOOT
    assert resolve("metal-amd64-uki.efi", V("1.12.0"), schematic).bootloader is None


def test_bad_sector_size() -> None:
    schematic = Schematic(customization=Customization(disk_image=DiskImage(1024)))
    with pytest.raises(InvalidInput, match="sector size 1024"):
        resolve("metal-amd64.raw.zst", V("1.12.0"), schematic)


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("azure-amd64.vhd", "subformat=fixed,force_size"),
        ("azure-amd64.vhd.zst", "subformat=fixed,force_size"),
        ("aws-amd64.qcow2", "cluster_size=8k"),
        ("oracle-amd64.qcow2", "cluster_size=8k"),
        ("exoscale-amd64.qcow2.zst", "cluster_size=8k"),
        ("metal-amd64.raw.zst", ""),
        # Upstream would pass azure's vpc options to a qcow2 conversion and fail.
        ("azure-amd64.qcow2", "cluster_size=8k"),
        ("oracle-amd64.vhd", ""),
    ],
)
def test_disk_format_options(path: str, options: str) -> None:
    assert resolve(path, V("1.11.0")).disk_format_options == options


def test_enroll_keys() -> None:
    assert resolve("metal-amd64-secureboot.iso", V("1.10.0")).enroll_keys is EnrollKeys.IF_SAFE
    assert resolve("metal-amd64.iso", V("1.10.0")).enroll_keys is None
    schematic = Schematic(customization=Customization(secureboot=SecureBoot(enroll_keys="off")))
    assert resolve("metal-amd64-secureboot.raw.xz", V("1.10.0"), schematic).enroll_keys is (
        EnrollKeys.OFF
    )
    bad = Schematic(customization=Customization(secureboot=SecureBoot(enroll_keys="always")))
    with pytest.raises(InvalidInput) as info:
        resolve("metal-amd64-secureboot.iso", V("1.10.0"), bad)
    assert str(info.value) == (
        'invalid secureboot enrollKeys value "always": always does not belong to '
        "SDBootEnrollKeys values"
    )
    # Only checked when Secure Boot is on, like upstream.
    assert resolve("metal-amd64.iso", V("1.10.0"), bad).enroll_keys is None


@pytest.mark.parametrize(
    ("path", "version", "schematic", "message"),
    [
        (
            "metal-amd64-secureboot.iso",
            "1.4.0",
            None,
            'secureboot is not supported for Talos version "v1.4.0"',
        ),
        ("metal-amd64-uki.efi", "1.4.9", None, "UKI output is not supported in this Talos version"),
        (
            "metal-amd64.iso",
            "1.11.0",
            Schematic(customization=Customization(embedded_machine_configuration="x")),
            "embedding configuration is not supported for Talos version v1.11.0",
        ),
        ("foo-amd64.iso", "1.11.0", None, 'unknown platform: "foo"'),
        ("initramfs-amd64.raw", "1.11.0", None, 'unknown platform: "initramfs"'),
    ],
)
def test_unsupported(path: str, version: str, schematic: Schematic | None, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        resolve(path, V(version), schematic)
    assert str(info.value) == message


def test_embedded_config_is_fine_where_supported_or_unused() -> None:
    schematic = Schematic(customization=Customization(embedded_machine_configuration="x"))
    assert resolve("cmdline-metal-amd64", V("1.11.0"), schematic).kind is OutputKind.CMDLINE
    assert resolve("metal-amd64.iso", V("1.12.0"), schematic).kind is OutputKind.ISO


def test_prerelease_resolves_with_release_quirks() -> None:
    pre = resolve("metal-amd64.raw.zst", V("v1.10.0-alpha.2"))
    assert pre.version == V("1.10.0-alpha.2")
    assert pre.quirks == resolve("metal-amd64.raw.zst", V("1.10.0")).quirks
    assert pre.bootloader is Bootloader.DUAL_BOOT
    assert resolve("metal-amd64.raw.zst", V("1.9.6")).bootloader is Bootloader.GRUB


def test_partition_meta_adds_the_bootloader_key() -> None:
    values = (MetaValue(0xA, "x"),)
    schematic = Schematic(customization=Customization(meta=values))
    dual = resolve("metal-amd64.raw.zst", V("1.10.0"), schematic)
    assert dual.partition_meta() == (*values, MetaValue(0xE, "dual-boot"))
    assert not dual.meta_on_cmdline
    assert resolve("metal-arm64.raw.zst", V("1.10.0"), schematic).partition_meta() == values
    assert resolve("metal-amd64.raw.zst", V("1.9.0"), schematic).partition_meta() == values
    grub = Schematic(customization=Customization(bootloader=Bootloader.GRUB))
    assert resolve("metal-amd64.raw.zst", V("1.12.0"), grub).partition_meta() == ()
    assert resolve("metal-amd64.iso", V("1.12.0"), schematic).partition_meta() == ()
    assert resolve("metal-amd64.iso", V("1.12.0"), schematic).meta_on_cmdline


@pytest.mark.parametrize(
    ("path", "version", "needs_uki"),
    [
        ("metal-amd64.iso", "1.4.0", False),
        ("metal-amd64.iso", "1.5.0", True),
        ("installer-amd64.tar", "1.10.0", True),
        ("cmdline-metal-amd64", "1.10.0", False),
        ("kernel-amd64", "1.10.0", False),
        ("metal-amd64-uki.efi", "1.5.0", True),
    ],
)
def test_needs_uki(path: str, version: str, needs_uki: bool) -> None:
    assert resolve(path, V(version)).needs_uki is needs_uki


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("kernel-x86_64", "kernel-amd64"),
        ("cmdline-packet-i386", "cmdline-equinixMetal-amd64"),
        ("initramfs-arm64.xz", "initramfs-arm64.xz"),
        ("metal-x86_64-secureboot.iso", "metal-amd64-secureboot.iso"),
        ("metal-arm64-uki.efi", "metal-arm64-uki.efi"),
        ("installer-arm64-secureboot.tar", "installer-arm64-secureboot.tar"),
        ("aws-installer-x86_64.tar", "aws-installer-amd64.tar"),
        ("gcp-x86_64.raw.tar.gz", "gcp-amd64.raw.tar.gz"),
    ],
)
def test_canonical_path(path: str, canonical: str) -> None:
    profile = resolve(path, V("1.11.0"))
    assert profile.asset_path == path
    assert profile.canonical_path == canonical


@pytest.mark.parametrize("name", platform_names())
def test_request_for_default_disk_image(name: str) -> None:
    for version in ("1.7.0", "1.14.0"):
        request = request_for(OutputKind.IMAGE, name, "amd64", V(version))
        profile = resolve_request(request, V(version))
        assert profile.asset_path == profile.canonical_path
        assert resolve(profile.asset_path, V(version)) == profile


def test_to_json() -> None:
    schematic = Schematic(
        customization=Customization(extra_kernel_args=("nolapic",), meta=(MetaValue(6, "u"),))
    )
    data = resolve("metal-amd64.raw.zst", V("1.11.0"), schematic).to_json()
    assert data == {
        "asset_path": "metal-amd64.raw.zst",
        "canonical_path": "metal-amd64.raw.zst",
        "version": "v1.11.0",
        "kind": "image",
        "platform": "metal",
        "arch": "amd64",
        "secureboot": False,
        "out_format": "zst",
        "disk_format": "raw",
        "disk_format_options": None,
        "disk_size": 4453302272,
        "sector_size": 512,
        "bootloader": "dual-boot",
        "enroll_keys": None,
        "needs_uki": True,
        "extra_kernel_args": ["nolapic"],
        "meta": [{"key": 6, "value": "u"}],
    }
    json.dumps(data)


def test_cli_profile(capsys: pytest.CaptureFixture[str]) -> None:
    from imagefactory.cli import main

    assert main(["profile", "aws-amd64.raw.zst", "--version", "v1.11.0"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["disk_size"] == 11736711168
    assert out == json.dumps(data, sort_keys=True, indent=2) + "\n"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "metal-amd64.ssd",
            'error parsing profile from path: invalid profile path: "metal-amd64.ssd"',
        ),
        ("kernel-foo", 'error parsing profile from path: invalid architecture: "foo"'),
        ("cmdline-metal", 'error parsing profile from path: invalid platform-arch: "metal"'),
    ],
)
def test_cli_profile_bad_path(path: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from imagefactory.cli import main

    assert main(["profile", path, "--version", "1.11.0"]) == 2
    assert capsys.readouterr().err == f"imagefactory: error: {message}\n"
