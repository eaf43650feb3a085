"""Disk images from `imagefactory build` boot under qemu and reach the sample init's markers.

GRUB (1.7) from the raw disk under SeaBIOS and OVMF; dual-boot (1.13) raw under SeaBIOS (GRUB) and,
through its qcow2, vmdk (from the ova) and vhd, under both firmwares (OVMF starts systemd-boot and
the UKI); the Secure Boot disk under OVMF with Secure Boot on.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import qemu
from build_helpers import pcr_key, private_config, write_schematic

from imagefactory.cli import main
from imagefactory.sample.init import parse_markers

OLD, NEW = "v1.7.7", "v1.13.0"
DONE = re.compile(r"TALOS-SAMPLE done")
SNAKEOIL_KEY = Path("/usr/share/ovmf/PkKek-1-snakeoil.key")
SNAKEOIL_CERT = Path("/usr/share/ovmf/PkKek-1-snakeoil.pem")
GRUB_ENTRY = "BOOT_IMAGE=/A/vmlinuz"


@pytest.fixture(scope="module")
def sample_with_newest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample release of the oldest GRUB-only and the newest dual-boot version, locked."""
    out = tmp_path_factory.mktemp("sample-disk-boot")
    assert main(["sample-release", "--out", str(out), "--versions", f"{OLD},{NEW}"]) == 0
    assert main(["lock", "--config", str(out / "config.yaml")]) == 0
    return out / "config.yaml"


@pytest.fixture(scope="module")
def disks(sample_with_newest: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("disk-boot")
    key = base / "snakeoil.key"
    subprocess.run(
        ["openssl", "rsa", "-in", str(SNAKEOIL_KEY), "-passin", "pass:snakeoil", "-out", str(key)],
        check=True, capture_output=True,
    )  # fmt: skip
    sb = {
        "signingKeyPath": str(key),
        "signingCertPath": str(SNAKEOIL_CERT),
        "pcrKeyPath": str(pcr_key(base)),
    }
    config = private_config(sample_with_newest, base, secureBoot=sb)
    schematic = write_schematic(base)
    wanted = [
        (OLD, "metal-amd64.raw"),
        (NEW, "metal-amd64.raw"),
        (NEW, "metal-amd64.qcow2"),
        (NEW, "metal-amd64.vhd"),
        (NEW, "vmware-amd64.ova"),
        (NEW, "metal-amd64-secureboot.raw"),
    ]
    found = {}
    for version, asset in wanted:
        out = base / version
        argv = [
            "build",
            "--config",
            str(config),
            "--schematic",
            str(schematic),
            "--version",
            version,
        ]
        assert main([*argv, "--asset", asset, "--out", str(out)]) == 0
        found[f"{version}/{asset}"] = out / asset
    with tarfile.open(found[f"{NEW}/vmware-amd64.ova"]) as tar:
        tar.extract("disk.vmdk", base, filter="data")
    found["vmdk"] = base / "disk.vmdk"
    found["work"] = base
    return found


def boot(
    disks: dict[str, Path], image: str, fmt: str, firmware: str, *, secure: bool = False
) -> str:
    firmware_args = [] if firmware == "bios" else qemu.uefi_args(disks["work"], secure=secure)
    drive = ["-drive", f"file={disks[image]},format={fmt},if=virtio,snapshot=on"]
    result = qemu.boot([*firmware_args, *drive], marker=DONE)
    assert result.ok, f"{result.failure}\n{result.log[-3000:]}"
    report = parse_markers(result.log)
    assert report.done and report.cmdline is not None
    assert "talos.marker=factory-test" in report.cmdline
    expected = image.partition("/")[0] if "/" in image else NEW
    assert report.version == expected
    return report.cmdline


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_grub_disk_boots(disks: dict[str, Path], firmware: str) -> None:
    cmdline = boot(disks, f"{OLD}/metal-amd64.raw", "raw", firmware)
    # GRUB's default entry A, not the reset entry.
    assert GRUB_ENTRY in cmdline and "talos.experimental.wipe" not in cmdline


def test_dual_boot_raw_boots_grub_under_bios(disks: dict[str, Path]) -> None:
    cmdline = boot(disks, f"{NEW}/metal-amd64.raw", "raw", "bios")
    assert GRUB_ENTRY in cmdline and "talos.experimental.wipe" not in cmdline


@pytest.mark.parametrize(
    ("image", "fmt", "firmware"),
    [
        (f"{NEW}/metal-amd64.qcow2", "qcow2", "uefi"),
        ("vmdk", "vmdk", "bios"),
        (f"{NEW}/metal-amd64.vhd", "vpc", "uefi"),
    ],
)
def test_converted_disks_boot(disks: dict[str, Path], image: str, fmt: str, firmware: str) -> None:
    cmdline = boot(disks, image, fmt, firmware)
    # Under OVMF the dual-boot disk starts systemd-boot and the UKI, which GRUB never names.
    assert (GRUB_ENTRY in cmdline) is (firmware == "bios")


def test_secure_boot_disk_boots_with_secure_boot_on(disks: dict[str, Path]) -> None:
    cmdline = boot(disks, f"{NEW}/metal-amd64-secureboot.raw", "raw", "uefi", secure=True)
    assert GRUB_ENTRY not in cmdline and "lockdown=confidentiality" in cmdline
