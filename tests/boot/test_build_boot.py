"""Boot what `imagefactory build` makes from the sample release and read the sample init's markers.

Kernel + initramfs directly, the ISO under BIOS and UEFI, the UKI under OVMF, and the Secure Boot UKI
under OVMF with Secure Boot on (accepted when signed by a key OVMF trusts, refused otherwise).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import qemu
import yaml
from build_helpers import pcr_key, private_config, signing_pair, write_schematic

from imagefactory.cli import main
from imagefactory.imager import esp
from imagefactory.sample.init import parse_markers
from imagefactory.schematic import parse_schematic

VERSION = "v1.11.5"
DONE = re.compile(r"TALOS-SAMPLE done")
META = "talos.environment=INSTALLER_META_BASE64=MHhhPXsiZXh0ZXJuYWxJUHMiOlsiMS4yLjMuNCJdfQ=="
SNAKEOIL_KEY = Path("/usr/share/ovmf/PkKek-1-snakeoil.key")
SNAKEOIL_CERT = Path("/usr/share/ovmf/PkKek-1-snakeoil.pem")


@pytest.fixture(scope="module")
def built(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The boot schematic's assets, built once; Secure Boot ones signed with OVMF's snakeoil key."""
    base = tmp_path_factory.mktemp("boot-build")
    key = base / "snakeoil.key"
    subprocess.run(
        ["openssl", "rsa", "-in", str(SNAKEOIL_KEY), "-passin", "pass:snakeoil", "-out", str(key)],
        check=True, capture_output=True,
    )  # fmt: skip
    pcr = pcr_key(base)
    sb = {"signingKeyPath": str(key), "signingCertPath": str(SNAKEOIL_CERT), "pcrKeyPath": str(pcr)}
    config = private_config(sample_release, base, secureBoot=sb)
    schematic = write_schematic(base)
    assets = [
        "kernel-amd64",
        "initramfs-amd64.xz",
        "cmdline-metal-amd64",
        "metal-amd64.iso",
        "metal-amd64-uki.efi",
        "metal-amd64-secureboot-uki.efi",
        "metal-amd64.raw",
    ]
    out = base / "out"
    for asset in assets:
        argv = ["build", "--config", str(config), "--schematic", str(schematic)]
        assert main([*argv, "--version", VERSION, "--asset", asset, "--out", str(out)]) == 0
    result = {asset: out / asset for asset in assets}
    result["schematic"] = schematic
    result["work"] = base
    return result


def fat_with(work: Path, uki: Path) -> Path:
    root = work / f"{uki.name}-esp"
    (root / "EFI" / "BOOT").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(uki, root / "EFI" / "BOOT" / "BOOTX64.EFI")
    image = work / f"{uki.name}.img"
    image.unlink(missing_ok=True)
    esp.build_fat(image, esp.MIN_FAT32_SIZE, root, epoch=0)
    return image


def check_markers(built: dict[str, Path], result: qemu.BootResult) -> str:
    """The sample init's report: both extensions and the schematic one, microcode; returns cmdline."""
    assert result.ok, f"{result.failure}\n{result.log[-3000:]}"
    report = parse_markers(result.log)
    assert report.done and report.version == VERSION
    assert report.extensions_yaml is not None
    layers = yaml.safe_load(report.extensions_yaml)["layers"]
    names = {layer["metadata"]["name"]: layer["metadata"]["version"] for layer in layers}
    schematic_id = parse_schematic(built["schematic"].read_bytes()).id
    assert {"intel-ucode", "iscsi-tools"} <= names.keys()
    assert names["schematic"] == schematic_id
    assert {layer["image"] for layer in layers} | {"rootfs.sqsh"} == {n for n, _ in report.sqsh}
    assert any(path.endswith("GenuineIntel.bin") for path, _ in report.microcode)
    assert report.cmdline is not None
    return report.cmdline


def assert_main_profile(seen: str) -> None:
    """The default entry started the UKI's main profile (systemd 257, as Talos ships from 1.10):
    the schematic's arguments, not the reset profile's wipe that comes after it."""
    assert "talos.marker=factory-test" in seen
    assert "talos.experimental.wipe" not in seen


def test_kernel_and_initramfs_boot_directly(built: dict[str, Path]) -> None:
    cmdline = built["cmdline-metal-amd64"].read_text()
    result = qemu.boot(
        ["-kernel", str(built["kernel-amd64"]), "-initrd", str(built["initramfs-amd64.xz"]),
         "-append", cmdline],
        marker=DONE,
    )  # fmt: skip
    seen = check_markers(built, result)
    assert seen == cmdline
    assert "talos.marker=factory-test" in seen and META in seen


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_iso_boots(built: dict[str, Path], firmware: str) -> None:
    firmware_args = [] if firmware == "bios" else qemu.uefi_args(built["work"])
    result = qemu.boot([*firmware_args, "-cdrom", str(built["metal-amd64.iso"])], marker=DONE)
    seen = check_markers(built, result)
    assert "talos.halt_if_installed=1" in seen and "talos.marker=factory-test" in seen
    assert META in seen
    assert_main_profile(seen)


def test_uki_boots_from_fat_under_ovmf(built: dict[str, Path]) -> None:
    image = fat_with(built["work"], built["metal-amd64-uki.efi"])
    drive = ["-drive", f"file={image},format=raw,if=virtio,snapshot=on"]
    result = qemu.boot([*qemu.uefi_args(built["work"]), *drive], marker=DONE)
    seen = check_markers(built, result)
    assert "talos.marker=factory-test" in seen and META in seen
    assert_main_profile(seen)


def test_disk_image_boots_its_main_profile_under_ovmf(built: dict[str, Path]) -> None:
    drive = ["-drive", f"file={built['metal-amd64.raw']},format=raw,if=virtio,snapshot=on"]
    result = qemu.boot([*qemu.uefi_args(built["work"]), *drive], marker=DONE)
    seen = check_markers(built, result)
    assert_main_profile(seen)
    assert META not in seen  # a disk image keeps META in its partition, not on the command line


def test_secure_boot_uki_boots_with_secure_boot_on(built: dict[str, Path]) -> None:
    image = fat_with(built["work"], built["metal-amd64-secureboot-uki.efi"])
    drive = ["-drive", f"file={image},format=raw,if=virtio,snapshot=on"]
    result = qemu.boot([*qemu.uefi_args(built["work"], secure=True), *drive], marker=DONE)
    seen = check_markers(built, result)
    assert "lockdown=confidentiality" in seen


def test_uki_signed_by_an_untrusted_key_is_refused(built: dict[str, Path]) -> None:
    work = built["work"]
    key, cert = signing_pair(work, "other", "not trusted")
    signed = work / "other-signed.efi"
    subprocess.run(
        ["sbsign", "--key", str(key), "--cert", str(cert), "--output", str(signed),
         str(built["metal-amd64-uki.efi"])],
        check=True, capture_output=True,
    )  # fmt: skip
    drive = ["-drive", f"file={fat_with(work, signed)},format=raw,if=virtio,snapshot=on"]
    result = qemu.boot([*qemu.uefi_args(work, secure=True), *drive], marker=DONE)
    assert not result.ok
    assert result.failure in {"Access Denied", "Security Violation", "Shell> "}
