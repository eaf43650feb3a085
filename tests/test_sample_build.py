"""The sample release built for real (Debian parts, busybox, mksquashfs, cpio) into an OCI layout.

Checks the layout, formats and signatures with real tools, and that two builds give the same digests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from imagefactory.config import load_config
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.pull import pull_image, unpack_image
from imagefactory.platforms import Arch
from imagefactory.sample.catalogs import LAYOUT_ORIGIN
from imagefactory.sample.debian import debian_parts
from imagefactory.sample.release import Release, ReleaseRequest, build_release
from imagefactory.sample.versions import SampleVersion, parse_versions
from imagefactory.signing import keys
from imagefactory.signing.policy import Mode, SignatureError, Verifier

# Two versions on each side of the xz/zstd (1.8) and usr-merge/unified installer (1.10) quirks.
VERSIONS = "v1.7.7,v1.11.5"
ARCHES = ("amd64", "arm64")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    out = tmp_path_factory.mktemp("sample")
    return build_release(ReleaseRequest(out, parse_versions(VERSIONS)))


@pytest.fixture(scope="module")
def target(release: Release) -> LayoutTarget:
    return LayoutTarget(release.request.out / "oci")


class Unpacked(dict[tuple[str, str, str], Path]):
    """(repository, tag, arch) -> the image unpacked into a directory, on first use."""

    def __init__(self, target: LayoutTarget, base: Path) -> None:
        super().__init__()
        self.target = target
        self.base = base

    def __missing__(self, key: tuple[str, str, str]) -> Path:
        repository, tag, arch = key
        dest = self.base / f"{repository.replace('/', '_')}-{tag}-{arch}"
        unpack_image(self.target, pull_image(self.target, repository, tag, arch), dest)
        self[key] = dest
        return dest


@pytest.fixture(scope="module")
def unpacked(target: LayoutTarget, tmp_path_factory: pytest.TempPathFactory) -> Unpacked:
    return Unpacked(target, tmp_path_factory.mktemp("unpacked"))


def tool(*argv: str | Path, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        [str(a) for a in argv], input=stdin, capture_output=True, check=True, timeout=120
    ).stdout


def test_every_upstream_repository_and_tag(release: Release) -> None:
    assert set(release.digests()) == {
        "siderolabs/imager:v1.7.7",
        "siderolabs/imager:v1.11.5",
        "siderolabs/installer:v1.7.7",
        "siderolabs/installer-base:v1.11.5",
        "siderolabs/extensions:v1.7.7",
        "siderolabs/extensions:v1.11.5",
        "siderolabs/overlays:v1.7.7",
        "siderolabs/overlays:v1.11.5",
        "siderolabs/sbc-raspberrypi:v0.1.0",
        "siderolabs/iscsi-tools:v0.1.6",
        "siderolabs/gvisor:20240826.0",
        "siderolabs/intel-ucode:20240312",
        "siderolabs/intel-ucode:20250211",
        "siderolabs/dummy-module:1.0.0-v1.7.7",
        "siderolabs/dummy-module:1.0.0-v1.11.5",
    }
    index = json.loads((release.request.out / "sample-release.json").read_text())
    assert index["origin"] == LAYOUT_ORIGIN
    assert len(index["images"]) == len(release.images)


def test_every_image_is_a_two_platform_index(release: Release, target: LayoutTarget) -> None:
    for image in release.images:
        _, raw = target.get_manifest(image.repository, image.tag)
        top = json.loads(raw)
        assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
        platforms = sorted(m["platform"]["architecture"] for m in top["manifests"])
        assert platforms == list(ARCHES), image


def test_skopeo_reads_the_layout(release: Release) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    layout = release.request.out / "oci"
    out = tool("skopeo", "inspect", "--config", f"oci:{layout}:siderolabs/imager:v1.11.5")
    config = json.loads(out)["config"]
    assert config["Entrypoint"] == ["/bin/imager"]
    assert "VERSION=v1.11.5" in config["Env"]
    assert config["Labels"] == {"alpha.talos.dev/version": "v1.11.5"}


@pytest.mark.parametrize("tag", ["v1.7.7", "v1.11.5"])
def test_imager_carries_assets_of_every_arch(
    target: LayoutTarget, unpacked: Unpacked, tag: str
) -> None:
    root = unpacked[("siderolabs/imager", tag, "amd64")]
    for asset_arch in Arch:
        parts = debian_parts(asset_arch)
        base = root / "usr/install" / asset_arch
        assert sorted(p.name for p in base.iterdir()) == [
            "initramfs.xz",
            "systemd-boot.efi",
            "systemd-stub.efi",
            "vmlinuz",
        ]
        assert (base / "vmlinuz").read_bytes() == parts.vmlinuz.read_bytes()
        # systemd 257 (Debian 13) from 1.10, whose stub boots a multi-profile UKI's main profile
        multiprofile = SampleVersion.parse(tag).quirks.uki_profiles
        stub = parts.sd_stub_257 if multiprofile else parts.sd_stub
        loader = parts.sd_boot_257 if multiprofile else parts.sd_boot
        assert (base / "systemd-stub.efi").read_bytes() == stub.read_bytes()
        assert (base / "systemd-boot.efi").read_bytes() == loader.read_bytes()
        # the stub's SBAT names its systemd release
        release = b",systemd,257," if multiprofile else b",systemd,252,"
        assert release in stub.read_bytes()
    assert (root / "bin/sh").readlink() == Path("busybox")
    assert (root / "bin/imager").readlink() == Path("installer")
    # Each platform has its own tools layer, then the same all-arch assets layer.
    amd64 = pull_image(target, "siderolabs/imager", tag, "amd64")
    arm64 = pull_image(target, "siderolabs/imager", tag, "arm64")
    assert len(amd64.layers) == len(arm64.layers) == 2
    assert amd64.layers[1] == arm64.layers[1]
    for image, machine in ((amd64, 0x3E), (arm64, 0xB7)):
        with (
            target.open_blob("siderolabs/imager", image.layers[0].digest) as blob,
            tarfile.open(fileobj=blob, mode="r|gz") as layer,
        ):
            for member in layer:
                if member.name.removeprefix("./") == "bin/busybox":
                    head = layer.extractfile(member)
                    assert head is not None
                    # ELF e_machine: 0x3e x86-64, 0xb7 aarch64.
                    assert head.read(20)[18] == machine
                    break
            else:
                pytest.fail("no bin/busybox in the tools layer")


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("tag", ["v1.7.7", "v1.11.5"])
def test_initramfs_and_rootfs_formats(
    unpacked: Unpacked, tmp_path: Path, tag: str, arch: str
) -> None:
    version = SampleVersion.parse(tag)
    parts = debian_parts(Arch(arch))
    initramfs = (
        unpacked[("siderolabs/imager", tag, "amd64")] / "usr/install" / arch / "initramfs.xz"
    )
    data = initramfs.read_bytes()
    if version.compression == "xz":
        assert data[:6] == b"\xfd7zXZ\x00"
        listing = tool("xz", "--robot", "--list", initramfs).decode()
        assert "\tCRC32\t" in listing and "CRC64" not in listing
        cpio = tool("xz", "-dc", initramfs)
    else:
        assert data[:4] == b"\x28\xb5\x2f\xfd"
        cpio = tool("zstd", "-dc", initramfs)
    names = tool("cpio", "-t", "--quiet", stdin=cpio).decode().split()
    assert names == [
        ".",
        "bin",
        "bin/busybox",
        "bin/sh",
        "dev",
        "init",
        "proc",
        "rootfs.sqsh",
        "sys",
    ]
    verbose = tool("cpio", "-tv", "--quiet", stdin=cpio).decode().splitlines()
    assert all(" root     root " in line for line in verbose)

    extract = tmp_path / "x"
    extract.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=cpio, cwd=extract, check=True)
    assert b"version=" + tag.encode() in (extract / "init").read_bytes()
    sqsh = extract / "rootfs.sqsh"
    stats = tool("unsquashfs", "-s", sqsh).decode()
    assert f"Compression {version.compression}" in stats
    paths = tool("unsquashfs", "-l", "-d", "", sqsh).decode().split()
    modules = f"/{version.modules_path}/{parts.kernel_version}"
    assert sorted(paths) == sorted(
        [
            "/etc",
            "/etc/os-release",
            *[f"/{p}" for p in _parents(version.modules_path)],
            modules,
            f"{modules}/modules.builtin",
            f"{modules}/modules.builtin.modinfo",
            f"{modules}/modules.order",
        ]
    )


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


@pytest.mark.parametrize("tag", ["v1.7.7", "v1.11.5"])
def test_depmod_runs_on_rootfs_with_the_module_extension(
    unpacked: Unpacked, tmp_path: Path, tag: str
) -> None:
    """What the imager does with a module extension: unsquash the modules path, depmod."""
    if shutil.which("depmod") is None and not Path("/usr/sbin/depmod").exists():
        pytest.skip("kmod's depmod is not installed")
    version = SampleVersion.parse(tag)
    kver = debian_parts(Arch.AMD64).kernel_version
    initramfs = unpacked[("siderolabs/imager", tag, "amd64")] / "usr/install/amd64/initramfs.xz"
    cpio = tool("xz" if version.compression == "xz" else "zstd", "-dc", initramfs)
    extract = tmp_path / "cpio"
    extract.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "rootfs.sqsh"], input=cpio, cwd=extract, check=True)
    rootfs = tmp_path / "rootfs"
    tool(
        "unsquashfs",
        "-no-xattrs",
        "-d",
        rootfs,
        "-f",
        "-n",
        extract / "rootfs.sqsh",
        version.modules_path,
    )
    ext = unpacked[("siderolabs/dummy-module", f"1.0.0-{tag}", "amd64")]
    module = ext / "rootfs" / version.modules_path / kver / "extras/dummy.ko"
    assert module.read_bytes()[:4] == b"\x7fELF"
    assert f"vermagic={kver.split('-amd64')[0]}".encode() in module.read_bytes()
    dest = rootfs / version.modules_path / kver / "extras"
    dest.mkdir()
    shutil.copy(module, dest)
    basedir = rootfs / "usr" if version.usr_merged else rootfs
    depmod = shutil.which("depmod") or "/usr/sbin/depmod"
    tool(depmod, "--all", "--basedir", basedir, kver)
    dep = (rootfs / version.modules_path / kver / "modules.dep").read_text()
    assert "extras/dummy.ko:" in dep


@pytest.mark.parametrize("tag", ["v1.7.7", "v1.11.5"])
def test_extensions_catalog_and_images(
    release: Release,
    target: LayoutTarget,
    unpacked: Unpacked,
    tag: str,
) -> None:
    version = SampleVersion.parse(tag)
    catalog = unpacked[("siderolabs/extensions", tag, "amd64")]
    assert sorted(p.name for p in catalog.iterdir()) == ["descriptions.yaml", "image-digests"]
    lines = (catalog / "image-digests").read_text().splitlines()
    descriptions = yaml.safe_load((catalog / "descriptions.yaml").read_text())
    assert set(descriptions) == set(lines)
    names = set()
    for line in lines:
        origin, _, rest = line.partition("/")
        assert origin == LAYOUT_ORIGIN
        ref, _, digest = rest.partition("@")
        repository, _, ext_tag = ref.rpartition(":")
        # The line's digest is what its tag names in the release.
        assert target.resolve(repository, ext_tag).digest == digest
        names.add(repository)
        for arch in ARCHES:
            root = unpacked[(repository, ext_tag, arch)]
            assert sorted(p.name for p in root.iterdir()) == ["manifest.yaml", "rootfs"]
            manifest = yaml.safe_load((root / "manifest.yaml").read_text())
            assert manifest["version"] == "v1alpha1"
            meta = manifest["metadata"]
            assert f"siderolabs/{meta['name']}" == repository
            assert meta["version"] == ext_tag
            assert descriptions[line] == {
                "author": meta["author"],
                "description": meta["description"],
            }
            assert meta["compatibility"]["talos"]["version"].startswith(">= v")
    assert names == {
        "siderolabs/dummy-module",
        "siderolabs/gvisor",
        "siderolabs/intel-ucode",
        "siderolabs/iscsi-tools",
    }
    ucode_line = next(line for line in lines if "/intel-ucode:" in line)
    ucode_tag = ucode_line.split("@")[0].rpartition(":")[2]
    ucode = unpacked[("siderolabs/intel-ucode", ucode_tag, "amd64")] / "rootfs"
    assert sorted(p.name for p in (ucode / version.firmware_path / "intel-ucode").iterdir()) == [
        "06-55-04",
        "06-8f-08",
    ]
    other = "lib/firmware" if version.usr_merged else "usr/lib/firmware"
    assert not (ucode / other).exists()
    gvisor = unpacked[("siderolabs/gvisor", "20240826.0", "amd64")]
    constraint = yaml.safe_load((gvisor / "manifest.yaml").read_text())["metadata"]
    assert constraint["compatibility"]["talos"]["version"] == ">= v1.9.0"
    iscsi = unpacked[("siderolabs/iscsi-tools", "v0.1.6", "arm64")] / "rootfs"
    assert (iscsi / "usr/local/sbin/iscsid").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("tag", ["v1.7.7", "v1.11.5"])
def test_overlays_catalog(target: LayoutTarget, unpacked: Unpacked, tag: str) -> None:
    doc = yaml.safe_load(
        (unpacked[("siderolabs/overlays", tag, "amd64")] / "overlays.yaml").read_text()
    )
    (entry,) = doc["overlays"]
    assert entry["name"] == "rpi_generic"
    assert entry["image"] == f"{LAYOUT_ORIGIN}/siderolabs/sbc-raspberrypi:v0.1.0"
    assert target.resolve("siderolabs/sbc-raspberrypi", "v0.1.0").digest == entry["digest"]


def test_installer_images(target: LayoutTarget, unpacked: Unpacked) -> None:
    old = pull_image(target, "siderolabs/installer", "v1.7.7", "arm64")
    assert len(old.layers) == 2
    assert old.config["config"]["Entrypoint"] == ["/bin/installer"]
    root = unpacked[("siderolabs/installer", "v1.7.7", "arm64")]
    assert sorted(p.name for p in (root / "usr/install/arm64").iterdir()) == [
        "initramfs.xz",
        "vmlinuz",
    ]
    assert not (root / "usr/install/amd64").exists()
    new = pull_image(target, "siderolabs/installer-base", "v1.11.5", "amd64")
    assert len(new.layers) == 1
    assert new.config["config"]["Entrypoint"] == ["/bin/installer"]
    root = unpacked[("siderolabs/installer-base", "v1.11.5", "amd64")]
    assert not (root / "usr/install").exists()
    assert (root / "bin/installer").read_text().startswith("#!/bin/sh\n")


def test_every_image_and_platform_manifest_is_signed(
    release: Release, target: LayoutTarget
) -> None:
    public_key = keys.load_public_key(release.public_key)
    verifier = Verifier.with_public_key(public_key)
    stranger = Verifier.with_public_key(keys.generate_key().public_key())
    signer = f"key {keys.key_id(public_key)[:16]}"
    assert release.images
    for image in release.images:
        reference = f"{LAYOUT_ORIGIN}/{image.repository}"
        _, raw = target.get_manifest(image.repository, image.digest)
        children = [child["digest"] for child in json.loads(raw)["manifests"]]
        assert children
        for digest in (image.digest, *children):
            verified = verifier.verify(target, image.repository, digest, reference)
            assert (verified.mode, verified.digest, verified.signer) == (
                Mode.PUBLIC_KEY,
                digest,
                signer,
            )
            assert verified.layer_digest.startswith("sha256:")
            # Signed by the release's key, not merely signed: another key is refused.
            with pytest.raises(SignatureError):
                stranger.verify(target, image.repository, digest, reference)


def test_config_is_loadable_and_points_at_the_release(release: Release) -> None:
    config = load_config(release.config)
    assert config.sources.layout_path == (release.request.out / "oci").resolve()
    assert config.sources.namespace == ""
    assert config.sources.verify.public_key == release.public_key.resolve()
    assert config.versions.listed == ("v1.7.7", "v1.11.5")


def test_two_builds_give_identical_digests_and_reruns_keep_the_key(
    release: Release, tmp_path: Path
) -> None:
    again = build_release(ReleaseRequest(tmp_path / "again", parse_versions(VERSIONS)))
    assert again.digests() == release.digests()
    # A re-run into the same directory keeps its key and adds no signatures.
    out = release.request.out
    key = (out / "cosign.key").read_bytes()
    before = _index_entries(out)
    rerun = build_release(ReleaseRequest(out, parse_versions(VERSIONS)))
    assert rerun.digests() == release.digests()
    assert (out / "cosign.key").read_bytes() == key
    assert _index_entries(out) == before


def test_source_date_epoch_in_the_environment_changes_nothing(
    release: Release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sample version has its own epoch: an outer SOURCE_DATE_EPOCH (as build wrappers set)
    neither stops mksquashfs nor changes a digest."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    again = build_release(ReleaseRequest(tmp_path / "env", parse_versions(VERSIONS)))
    assert again.digests() == release.digests()


def _index_entries(out: Path) -> set[tuple[str, str]]:
    index = json.loads((out / "oci/index.json").read_text())
    return {
        (m["annotations"]["org.opencontainers.image.ref.name"], m["digest"])
        for m in index["manifests"]
    }


def test_lock_pins_and_verifies_every_sample_image(release: Release) -> None:
    from imagefactory.sources import make_lock

    lock = make_lock(load_config(release.config))
    digests = release.digests()
    assert list(lock["versions"]) == ["v1.7.7", "v1.11.5"]
    for tag, entry in lock["versions"].items():
        assert entry["imager"]["digest"] == digests[f"siderolabs/imager:{tag}"]
        installer = entry["installer"]
        assert installer["digest"] == digests[f"{installer['repository']}:{tag}"]
        assert len(entry["extensions"]) == 4
        for pinned in [*entry["extensions"].values(), *entry["overlays"].values()]:
            assert pinned["digest"] == digests[f"{pinned['repository']}:{pinned['tag']}"]
            assert pinned["verified"].startswith("public-key")
        assert set(entry["overlays"]) == {"rpi_generic"}
