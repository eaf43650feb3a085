"""Installer tarballs of the sample release: upstream's docker-archive layout, layers per version,
read by skopeo, byte-identical across stores; and the sample installer answering `install`."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from build_helpers import pcr_key, private_config, signing_pair, write_schematic

from imagefactory.cli import main
from imagefactory.config import load_config
from imagefactory.installer_image import installer_image, write_v2_tree
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.pull import pull_image, unpack_image
from imagefactory.schematic import parse_schematic
from imagefactory.versions import TalosVersion

SCHEMATIC = "customization:\n  extraKernelArgs:\n    - console=ttyS0\n"


@pytest.fixture(scope="module")
def config(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return private_config(sample_release, tmp_path_factory.mktemp("installer"))


def build(config: Path, version: str, asset: str, out: Path, schematic: Path) -> int:
    return main(
        [
            "build",
            "--config", str(config),
            "--schematic", str(schematic),
            "--version", version,
            "--asset", asset,
            "--out", str(out),
        ]
    )  # fmt: skip


def members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def layer_names(layer: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        return [m.name for m in tar.getmembers()]


@pytest.mark.parametrize(
    ("version", "assets"),
    [
        ("v1.7.7", ["usr/install/amd64/initramfs.xz", "usr/install/amd64/vmlinuz"]),
        ("v1.11.5", ["usr/install/amd64/systemd-boot.efi", "usr/install/amd64/vmlinuz.efi"]),
    ],
)
def test_tarball_layout(config: Path, tmp_path: Path, version: str, assets: list[str]) -> None:
    schematic = write_schematic(tmp_path, SCHEMATIC)
    assert build(config, version, "installer-amd64.tar", tmp_path / "out", schematic) == 0
    tar_path = tmp_path / "out" / "installer-amd64.tar"
    files = members(tar_path)
    (entry,) = json.loads(files["manifest.json"])
    # go-containerregistry's order and names: config by digest, layers by digest, manifest last.
    with tarfile.open(tar_path) as tar:
        assert [m.name for m in tar.getmembers()] == [
            entry["Config"],
            *entry["Layers"],
            "manifest.json",
        ]
    base = "siderolabs/installer" if version == "v1.7.7" else "siderolabs/installer-base"
    assert entry["RepoTags"] == [f"{base}:{version}"]
    # The base's tools layer only (1.7's own assets layer dropped), then ours.
    tools, ours = (files[name] for name in entry["Layers"])
    assert "bin/installer" in layer_names(tools)
    assert sorted(layer_names(ours)) == assets
    config_doc = json.loads(files[entry["Config"]])
    assert config_doc["architecture"] == "amd64"
    assert config_doc["config"]["Entrypoint"] == ["/bin/installer"]
    assert len(config_doc["rootfs"]["diff_ids"]) == 2


def test_skopeo_reads_the_tarball(config: Path, tmp_path: Path) -> None:
    schematic = write_schematic(tmp_path, SCHEMATIC)
    assert build(config, "v1.11.5", "installer-arm64.tar", tmp_path / "out", schematic) == 0
    archive = f"docker-archive:{tmp_path / 'out' / 'installer-arm64.tar'}"
    info = json.loads(
        subprocess.run(["skopeo", "inspect", archive], check=True, capture_output=True).stdout
    )
    assert info["Architecture"] == "arm64"
    assert info["Labels"] == {"alpha.talos.dev/version": "v1.11.5"}
    root = tmp_path / "root"
    skopeo_to_layout(archive, tmp_path / "oci", "arm64", root)
    assert (root / "usr/install/arm64/vmlinuz.efi").read_bytes()[:2] == b"MZ"


def test_reproducible_across_stores(sample_release: Path, tmp_path: Path) -> None:
    schematic = write_schematic(tmp_path, SCHEMATIC)
    outs = []
    for name in ("one", "two"):
        cfg = private_config(sample_release, tmp_path / name)
        for asset in ("installer-amd64.tar", "installer-arm64.tar"):
            assert build(cfg, "v1.11.5", asset, tmp_path / name / "out", schematic) == 0
        outs.append(tmp_path / name / "out")
    for asset in ("installer-amd64.tar", "installer-arm64.tar"):
        assert (outs[0] / asset).read_bytes() == (outs[1] / asset).read_bytes()


@pytest.mark.parametrize(
    ("asset", "message"),
    [
        ("installer-amd64-secureboot.tar", "secure boot is disabled"),
        ("nosuchcloud-installer-amd64.tar", 'unknown platform: "nosuchcloud"'),
        ("installer-riscv64.tar", "riscv64"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], asset: str, message: str
) -> None:
    schematic = write_schematic(tmp_path, SCHEMATIC)
    out = tmp_path / "out"
    assert build(config, "v1.11.5", asset, out, schematic) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_oci_index_and_v2_tree(config: Path, tmp_path: Path) -> None:
    schematic = parse_schematic(SCHEMATIC.encode(), source="test")
    image = installer_image(load_config(config), schematic, TalosVersion.parse("v1.11.5"))
    index = json.loads(image.index)
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    base = write_v2_tree(image, tmp_path / "public", schematic.id, "v1.11.5")
    assert base == tmp_path / "public/v2/installer" / schematic.id
    assert (base / "manifests/v1.11.5").read_bytes() == image.index
    assert (base / "manifests" / image.digest).read_bytes() == image.index
    for platform in image.manifests:
        manifest = json.loads(platform.manifest)
        for desc in (manifest["config"], *manifest["layers"]):
            blob = base / "blobs" / desc["digest"]
            assert blob.stat().st_size == desc["size"]


def skopeo_to_layout(archive: str, layout: Path, arch: str, root: Path) -> None:
    """`skopeo copy` the archive into an OCI layout, then unpack that image into root."""
    subprocess.run(["skopeo", "copy", archive, f"oci:{layout}:i"], check=True, capture_output=True)
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    target = LayoutTarget(layout)
    unpack_image(target, pull_image(target, "i", entry["digest"], arch), root)


def run_in(root: Path, *argv: str) -> subprocess.CompletedProcess[bytes]:
    """Run a command of an unpacked image inside it, in a user namespace (no root needed)."""
    return subprocess.run(
        ["unshare", "-r", "chroot", str(root), *argv], capture_output=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("version", "installed"),
    [("v1.7.7", ("vmlinuz", "initramfs.xz")), ("v1.11.5", ("vmlinuz.efi", "systemd-boot.efi"))],
)
def test_installer_answers_install_with_its_assets(
    config: Path, tmp_path: Path, version: str, installed: tuple[str, ...]
) -> None:
    schematic = write_schematic(tmp_path, SCHEMATIC)
    assert build(config, version, "installer-amd64.tar", tmp_path / "out", schematic) == 0
    archive = f"docker-archive:{tmp_path / 'out' / 'installer-amd64.tar'}"
    root = tmp_path / "root"
    skopeo_to_layout(archive, tmp_path / "oci", "amd64", root)
    done = run_in(root, "/bin/installer", "install", "--arch", "amd64", "--disk", "/dev/vda")
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert f"TALOS-SAMPLE installer: {version} install --arch amd64 --disk /dev/vda" in out
    for name in installed:
        assert f"TALOS-SAMPLE asset: /usr/install/amd64/{name}" in out
    # The base installer alone lacks the assets: install fails as upstream's would.
    (root / "usr/install/amd64" / installed[0]).unlink()
    failed = run_in(root, "/bin/installer", "install", "--arch", "amd64")
    assert failed.returncode == 1
    assert f"open /usr/install/amd64/{installed[0]}: no such file" in failed.stderr.decode()


OVERLAY_SCHEMATIC = """\
overlay:
  image: siderolabs/sbc-raspberrypi
  name: rpi_generic
  options:
    configTxtAppend: dtoverlay=vc4-kms-v3d
"""


def test_overlay_layer(config: Path, tmp_path: Path) -> None:
    schematic = write_schematic(tmp_path, OVERLAY_SCHEMATIC)
    assert build(config, "v1.11.5", "installer-arm64.tar", tmp_path / "out", schematic) == 0
    files = members(tmp_path / "out" / "installer-arm64.tar")
    (entry,) = json.loads(files["manifest.json"])
    _, assets, overlay = (files[name] for name in entry["Layers"])
    assert "usr/install/arm64/vmlinuz.efi" in layer_names(assets)
    names = layer_names(overlay)
    assert "overlay/artifacts/arm64/u-boot/rpi_generic/u-boot.bin" in names
    assert "overlay/artifacts/arm64/dtb/broadcom/bcm2711-rpi-4-b.dtb" in names
    assert {"overlay/installers/default", "overlay/extra-options"} <= set(names)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(overlay))) as tar:
        options = tar.extractfile("overlay/extra-options").read()  # type: ignore[union-attr]
        installer = tar.getmember("overlay/installers/default")
    assert options == b"configTxtAppend: dtoverlay=vc4-kms-v3d\n"
    assert installer.mode == 0o755
    assert len(json.loads(files[entry["Config"]])["rootfs"]["diff_ids"]) == 3


@pytest.mark.parametrize(
    ("version", "uki_name"), [("v1.7.7", "vmlinuz.efi.signed"), ("v1.11.5", "vmlinuz.efi")]
)
def test_secureboot_installer_carries_signed_boot_files(
    sample_release: Path, tmp_path: Path, version: str, uki_name: str
) -> None:
    key, cert = signing_pair(tmp_path, "db", "installer test")
    sb = {
        "signingKeyPath": str(key),
        "signingCertPath": str(cert),
        "pcrKeyPath": str(pcr_key(tmp_path)),
    }
    config = private_config(sample_release, tmp_path / "sb", secureBoot=sb)
    schematic = write_schematic(tmp_path, SCHEMATIC)
    asset = "installer-amd64-secureboot.tar"
    assert build(config, version, asset, tmp_path / "out", schematic) == 0
    files = members(tmp_path / "out" / asset)
    (entry,) = json.loads(files["manifest.json"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(files[entry["Layers"][-1]]))) as tar:
        assert sorted(tar.getnames()) == sorted(
            [f"usr/install/amd64/{uki_name}", "usr/install/amd64/systemd-boot.efi"]
        )
        tar.extractall(tmp_path / "layer", filter="data")
    for name in (uki_name, "systemd-boot.efi"):
        listed = subprocess.run(
            ["sbverify", "--cert", str(cert), str(tmp_path / "layer/usr/install/amd64" / name)],
            capture_output=True,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr


def test_oci_layout_without_a_registry(config: Path, tmp_path: Path) -> None:
    """What the server does without a registry: the index into an OCI layout, read by skopeo."""
    schematic = parse_schematic(SCHEMATIC.encode(), source="test")
    image = installer_image(load_config(config), schematic, TalosVersion.parse("v1.7.7"))
    layout = LayoutTarget(tmp_path / "layout")
    descriptor = image.push_untagged(layout, "installer")
    layout.put_manifest("installer", image.index, descriptor.media_type, tag="v1.7.7")
    ref = f"oci:{tmp_path / 'layout'}:installer:v1.7.7"
    raw = subprocess.run(["skopeo", "inspect", "--raw", ref], check=True, capture_output=True)
    assert raw.stdout == image.index
    info = subprocess.run(
        ["skopeo", "inspect", "--override-arch", "arm64", ref], check=True, capture_output=True
    )
    assert json.loads(info.stdout)["Architecture"] == "arm64"
