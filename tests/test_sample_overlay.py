"""The sample overlay's installers, run with /bin/sh as the imager runs them (YAML on stdin)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from imagefactory.sample import overlays, tree


@pytest.fixture(scope="module")
def overlay_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tree.materialize(
        overlays.overlay_entries(), tmp_path_factory.mktemp("overlay"), overlays.OVERLAY_EPOCH
    )


def run(installer: Path, command: str, document: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["/bin/sh", str(installer), command],
        input=document.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_image_layout(overlay_root: Path) -> None:
    names = sorted(str(p.relative_to(overlay_root)) for p in overlay_root.rglob("*") if p.is_file())
    assert names == [
        f"artifacts/{overlays.DTB_PATH}",
        f"artifacts/{overlays.UBOOT_PATH}",
        "installers/default",
        "installers/rpi_generic",
        "profiles/rpi_generic.yaml",
    ]
    assert (overlay_root / "installers/default").stat().st_mode & 0o777 == 0o755
    assert (overlay_root / f"artifacts/{overlays.DTB_PATH}").read_bytes()[:4] == b"\xd0\x0d\xfe\xed"
    profile = yaml.safe_load((overlay_root / "profiles/rpi_generic.yaml").read_text())
    assert profile["arch"] == "arm64" and profile["output"]["kind"] == "image"


@pytest.mark.parametrize("installer", ["default", "rpi_generic"])
@pytest.mark.parametrize(
    ("options", "baud"), [("", "115200"), ("{}\n", "115200"), ('baudRate: "9600"\n', "9600")]
)
def test_get_options(overlay_root: Path, installer: str, options: str, baud: str) -> None:
    proc = run(overlay_root / "installers" / installer, "get-options", options)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout) == {
        "name": "rpi_generic",
        "kernelArgs": [
            "console=tty0",
            f"console=ttyAMA0,{baud}",
            "sysctl.kernel.kexec_load_disabled=1",
            "talos.dashboard.disabled=1",
        ],
        "partitionOptions": {"offset": overlays.PARTITION_OFFSET_SECTORS},
    }


def test_install_writes_uboot_and_copies_dtbs(overlay_root: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\xaa" * (2 * 1024 * 1024))
    prefix = tmp_path / "mnt"
    artifacts = overlay_root / "artifacts"
    document = yaml.safe_dump(
        {
            "installDisk": str(disk),
            "mountPrefix": str(prefix),
            "artifactsPath": str(artifacts),
            "extraOptions": {"baudRate": 9600},
        }
    )
    proc = run(overlay_root / "installers/default", "install", document)
    assert proc.returncode == 0, proc.stderr
    data = disk.read_bytes()
    uboot = (artifacts / overlays.UBOOT_PATH).read_bytes()
    offset = overlays.UBOOT_OFFSET_SECTORS * 512
    assert len(data) == 2 * 1024 * 1024  # conv=notrunc: the disk keeps its size
    assert data[offset : offset + len(uboot)] == uboot
    assert data[:offset] == b"\xaa" * offset
    assert data[offset + len(uboot) :] == b"\xaa" * (len(data) - offset - len(uboot))
    dtb = prefix / "boot/EFI/dtb/broadcom" / Path(overlays.DTB_PATH).name
    assert dtb.read_bytes() == (artifacts / overlays.DTB_PATH).read_bytes()
    assert (prefix / "boot/EFI/u-boot.bin").read_bytes() == uboot


@pytest.mark.parametrize(
    ("command", "document", "code", "message"),
    [
        ("install", "mountPrefix: /x\nartifactsPath: /y\n", 1, b"installDisk"),
        ("install", "", 1, b"installDisk"),
        ("get-options", "baudRate: fast\n", 1, b"baudRate must be a number"),
        ("frobnicate", "", 2, b"usage"),
    ],
)
def test_bad_input(
    overlay_root: Path, command: str, document: str, code: int, message: bytes
) -> None:
    proc = run(overlay_root / "installers/default", command, document)
    assert proc.returncode == code
    assert message in proc.stderr


def test_install_fails_on_missing_artifacts(overlay_root: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    document = f"installDisk: {disk}\nmountPrefix: {tmp_path}\nartifactsPath: {tmp_path}/none\n"
    proc = run(overlay_root / "installers/default", "install", document)
    assert proc.returncode != 0
