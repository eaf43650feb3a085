"""Disk images from the sample release: upstream's partitions, file systems that check clean, META,
the overlay's files, byte-identical rebuilds in fresh stores, and bad input refused with nothing left.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from build_helpers import private_config, write_schematic

from imagefactory import meta
from imagefactory.cli import main
from imagefactory.errors import InvalidInput
from imagefactory.platforms import assets_for
from imagefactory.profile import resolve
from imagefactory.sample import overlays
from imagefactory.schematic import parse_schematic
from imagefactory.versions import TalosVersion

OLD, NEW = "v1.7.7", "v1.11.5"
MIB = 1024 * 1024
SECTOR = 512
EFI_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_TYPE = "21686148-6449-6E6F-744E-656564454649"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
META_VALUE = '{"externalIPs":["1.2.3.4"]}'
SBC_SCHEMATIC = """\
overlay:
  image: siderolabs/sbc-raspberrypi
  name: rpi_generic
customization:
  extraKernelArgs:
    - talos.marker=sbc
"""
FOUR_K_SCHEMATIC = """\
customization:
  diskImage:
    sectorSize: 4096
"""


def label_guid(label: str) -> str:
    """Go's uuid.NewHash(sha256.New(), uuid.Nil, label, 8), written out independently."""
    raw = bytearray(hashlib.sha256(bytes(16) + label.encode()).digest()[:16])
    raw[6], raw[8] = (raw[6] & 0x0F) | 0x80, (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw))).upper()


class Builder:
    def __init__(self, config: Path, work: Path) -> None:
        self.config, self.work = config, work

    def __call__(self, asset: str, version: str, schematic: str | None = None) -> Path:
        where = self.work / f"s-{hashlib.sha256((schematic or '').encode()).hexdigest()[:12]}"
        where.mkdir(exist_ok=True)
        path = write_schematic(where, schematic) if schematic else write_schematic(where)
        out = self.work / "out" / version
        argv = [
            "build",
            "--config",
            str(self.config),
            "--schematic",
            str(path),
            "--version",
            version,
        ]
        assert main([*argv, "--asset", asset, "--out", str(out)]) == 0
        return out / asset


@pytest.fixture(scope="module")
def build(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Builder:
    work = tmp_path_factory.mktemp("disk")
    return Builder(private_config(sample_release, work), work)


def unpack(compressed: Path, dest_dir: Path) -> Path:
    """The standard tool's sparse output file (never the whole image in memory)."""
    tool = {
        ".zst": ["zstd", "-d", "-q", "-k", "--output-dir-flat", str(dest_dir)],
        ".xz": ["xz", "-d", "-k"],
    }
    if compressed.suffix == ".xz":
        copy = dest_dir / compressed.name
        copy.write_bytes(compressed.read_bytes())
        compressed = copy
    subprocess.run([*tool[compressed.suffix], str(compressed)], check=True, capture_output=True)
    return dest_dir / compressed.with_suffix("").name


def partitions(raw: Path, sector: int = SECTOR) -> dict[str, object]:
    if sector == SECTOR:
        result = subprocess.run(
            ["sfdisk", "-J", str(raw)], capture_output=True, check=True, text=True
        )
        table: dict[str, object] = json.loads(result.stdout)["partitiontable"]
        return table
    # A plain file has no logical sector size, and sfdisk 2.38 cannot be told one: fdisk -b can.
    argv = ["fdisk", "-b", str(sector), "-l", "-o", "Start,Sectors,Type-UUID,Name", str(raw)]
    text = subprocess.run(argv, capture_output=True, check=True, text=True).stdout
    head, _, rows = text.partition("Type-UUID")
    label = "gpt" if "Disklabel type: gpt" in head else "?"
    parts = [
        {"start": int(start), "size": int(size), "type": kind, "name": name}
        for start, size, kind, name in (
            line.split() for line in rows.splitlines()[1:] if line.strip()
        )
    ]
    return {"label": label, "sectorsize": sector, "partitions": parts}


def extract(raw: Path, part: dict[str, int], sector: int, dest: Path) -> Path:
    subprocess.run(
        ["dd", f"if={raw}", f"of={dest}", "bs=1M", "iflag=skip_bytes,count_bytes", "conv=sparse",
         f"skip={part['start'] * sector}", f"count={part['size'] * sector}", "status=none"],
        check=True,
    )  # fmt: skip
    return dest


def check_filesystems(raw: Path, work: Path, sector: int = SECTOR) -> dict[str, Path]:
    table = partitions(raw, sector)
    sector = int(table["sectorsize"])  # type: ignore[call-overload]
    found = {}
    for part in table["partitions"]:  # type: ignore[attr-defined]
        name = part["name"]
        image = extract(raw, part, sector, work / f"{raw.name}-{name}")
        found[name] = image
        if name == "EFI":
            subprocess.run(["fsck.vfat", "-n", str(image)], check=True, capture_output=True)
        elif name == "BOOT":
            subprocess.run(["xfs_repair", "-n", "-f", str(image)], check=True, capture_output=True)
    return found


def test_grub_layout_below_1_8(build: Builder, tmp_path: Path) -> None:
    raw = build("metal-amd64.raw", OLD)
    assert raw.stat().st_size == 1246 * MIB
    # Holes stay holes in the store (publishing the copy is link_into's job).
    (stored,) = {p.stat().st_blocks for p in build.work.glob("store/builds/*/metal-amd64.raw")}
    assert stored * 512 < 64 * MIB
    table = partitions(raw)
    assert table["id"] == label_guid("talos-image-disk") and table["sectorsize"] == SECTOR
    rows = [
        (p["name"], p["type"], p["uuid"], p["start"], p["size"], p.get("attrs"))
        for p in table["partitions"]  # type: ignore[attr-defined]
    ]
    mib = MIB // SECTOR
    assert rows == [
        ("EFI", EFI_TYPE, label_guid("EFI"), 1 * mib, 100 * mib, None),
        ("BIOS", BIOS_TYPE, label_guid("BIOS"), 101 * mib, 1 * mib, "LegacyBIOSBootable"),
        ("BOOT", LINUX_TYPE, label_guid("BOOT"), 102 * mib, 1000 * mib, None),
        ("META", LINUX_TYPE, label_guid("META"), 1102 * mib, 1 * mib, None),
        ("STATE", LINUX_TYPE, label_guid("STATE"), 1103 * mib, 100 * mib, None),
        ("EPHEMERAL", LINUX_TYPE, label_guid("EPHEMERAL"), 1203 * mib, 42 * mib, None),
    ]
    found = check_filesystems(raw, tmp_path)
    assert meta.decode_partition(found["META"].read_bytes()) == {0xA: META_VALUE}
    listing = subprocess.run(
        ["mdir", "-i", str(found["EFI"]), "-b", "-/", "::"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert "::/EFI/boot/BOOTX64.efi" in listing
    mbr = raw.read_bytes()[:512]
    assert mbr[510:] == b"\x55\xaa" and mbr[450] == 0xEE and any(mbr[:446])  # GRUB boot.img
    core_lba = int.from_bytes(mbr[0x5C:0x64], "little")
    assert core_lba == 101 * mib


def test_dual_boot_layout_and_meta_key(build: Builder, tmp_path: Path) -> None:
    raw = unpack(build("metal-amd64.raw.zst", NEW), tmp_path)
    assert raw.stat().st_size == 4453302272
    table = partitions(raw)
    names = [(p["name"], p["size"] * SECTOR // MIB) for p in table["partitions"]]  # type: ignore[attr-defined]
    assert names == [("EFI", 2101), ("BIOS", 1), ("BOOT", 2000), ("META", 1)]
    found = check_filesystems(raw, tmp_path)
    assert meta.decode_partition(found["META"].read_bytes()) == {0xA: META_VALUE, 0xE: "dual-boot"}
    listing = subprocess.run(
        ["mdir", "-i", str(found["EFI"]), "-b", "-/", "::"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert f"::/EFI/Linux/Talos-{NEW}.efi" in listing and "::/loader/loader.conf" in listing
    conf = subprocess.run(
        ["mtype", "-i", str(found["EFI"]), "::/loader/loader.conf"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert "timeout 10" in conf and "secure-boot-enroll off" in conf


def test_sd_boot_arm64(build: Builder, tmp_path: Path) -> None:
    path = unpack(build("metal-arm64.raw.xz", NEW), tmp_path)
    assert path.stat().st_size == 2355101696
    names = [(p["name"], p["size"] * SECTOR // MIB) for p in partitions(path)["partitions"]]  # type: ignore[attr-defined]
    assert names == [("EFI", 2101), ("META", 1)]
    check_filesystems(path, tmp_path)


def test_4k_sectors(build: Builder, tmp_path: Path) -> None:
    raw = unpack(build("metal-amd64.raw.zst", NEW, FOUR_K_SCHEMATIC), tmp_path)
    table = partitions(raw, 4096)
    assert table["sectorsize"] == 4096 and table["label"] == "gpt"
    starts = [p["start"] * 4096 for p in table["partitions"]]  # type: ignore[attr-defined]
    assert starts[0] == MIB
    found = check_filesystems(raw, tmp_path, 4096)
    assert meta.decode_partition(found["META"].read_bytes()) == {0xE: "dual-boot"}


def test_overlay_image(build: Builder, tmp_path: Path) -> None:
    raw = unpack(build("metal-arm64.raw.xz", NEW, SBC_SCHEMATIC), tmp_path)
    table = partitions(raw)
    first = table["partitions"][0]  # type: ignore[index]
    assert first["start"] >= overlays.PARTITION_OFFSET_SECTORS
    uboot = raw.read_bytes()[
        overlays.UBOOT_OFFSET_SECTORS * SECTOR : overlays.UBOOT_OFFSET_SECTORS * SECTOR
        + overlays.UBOOT_SIZE
    ]
    assert any(uboot)
    found = check_filesystems(raw, tmp_path)
    efi = str(found["EFI"])
    listing = subprocess.run(
        ["mdir", "-i", efi, "-b", "-/", "::"], capture_output=True, check=True, text=True
    ).stdout
    assert "::/dtb/broadcom/bcm2711-rpi-4-b.dtb" in listing and "::/u-boot.bin" in listing
    on_efi = subprocess.run(
        ["mtype", "-i", efi, "::/u-boot.bin"], capture_output=True, check=True
    ).stdout
    assert on_efi == uboot  # the same artifact, written raw and copied
    uki = subprocess.run(
        ["mtype", "-i", efi, f"::/EFI/Linux/Talos-{NEW}.efi"], capture_output=True, check=True
    ).stdout
    assert b"console=ttyAMA0,115200" in uki and b"talos.marker=sbc" in uki


ASSETS = [
    ("metal-amd64.raw.xz", OLD),
    ("metal-amd64.raw.zst", NEW),
    ("gcp-amd64.raw.tar.gz", NEW),
    ("azure-amd64.vhd.zst", NEW),
    ("vmware-amd64.ova", NEW),
    ("oracle-amd64.qcow2.zst", NEW),
    ("digital-ocean-amd64.raw.gz", NEW),
]


def test_reproducible_across_fresh_stores(sample_release: Path, tmp_path: Path) -> None:
    digests = []
    for n in (1, 2):
        builder = Builder(private_config(sample_release, tmp_path / str(n)), tmp_path / str(n))
        digests.append(
            {
                asset: hashlib.sha256(builder(asset, version).read_bytes()).hexdigest()
                for asset, version in ASSETS
            }
        )
    assert digests[0] == digests[1]


@pytest.mark.parametrize(
    ("asset", "schematic", "message"),
    [
        ("aws-amd64.ova", None, "platform aws does not offer ova disk images"),
        (
            "digital-ocean-arm64.raw.gz",
            None,
            "platform digital-ocean is not supported for architecture arm64",
        ),
        (
            "metal-amd64-secureboot.raw.zst",
            None,
            "error enhancing profile from schematic: secure boot is disabled",
        ),
        (
            "metal-amd64.raw.xz",
            SBC_SCHEMATIC,
            "overlay rpi_generic is not supported for architecture amd64",
        ),
        (
            "metal-amd64.img",
            None,
            'error parsing profile from path: invalid profile path: "metal-amd64.img"',
        ),
    ],
)
def test_bad_input(
    sample_release: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    asset: str,
    schematic: str | None,
    message: str,
) -> None:
    config = private_config(sample_release, tmp_path)
    path = write_schematic(tmp_path, schematic) if schematic else write_schematic(tmp_path)
    out = tmp_path / "out"
    argv = ["build", "--config", str(config), "--schematic", str(path), "--version", NEW]
    assert main([*argv, "--asset", asset, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"imagefactory: error: {message}"]
    assert not out.exists() or not any(out.iterdir())


def test_overlay_below_1_7_is_refused() -> None:
    schematic = parse_schematic(SBC_SCHEMATIC.encode())
    with pytest.raises(
        InvalidInput, match=r"^overlay is not supported for Talos version v1\.6\.7$"
    ):
        resolve("metal-arm64.raw.xz", TalosVersion.parse("v1.6.7"), schematic)
    assert (
        resolve("metal-arm64.raw.xz", TalosVersion.parse("v1.7.0"), schematic).out_format.value
        == "xz"
    )


def test_assets_for_lists_what_a_platform_offers() -> None:
    v = TalosVersion.parse
    assert assets_for("metal", "amd64", v("v1.11.5")) == (
        "metal-amd64.raw.zst", "metal-amd64.iso", "cmdline-metal-amd64", "kernel-amd64",
        "initramfs-amd64.xz", "installer-amd64.tar",
    )  # fmt: skip
    assert assets_for("aws", "amd64", v("v1.7.7")) == ("aws-amd64.raw.xz",)
    assert assets_for("gcp", "arm64", v("v1.11.5")) == ("gcp-arm64.raw.tar.gz",)
    assert assets_for("vmware", "amd64", v("v1.11.5"), secureboot=False)[0] == "vmware-amd64.ova"
    assert assets_for("nocloud", "arm64", v("v1.11.5"), secureboot=True)[0] == (
        "nocloud-arm64-secureboot.raw.zst"
    )
    assert assets_for("digital-ocean", "arm64", v("v1.11.5")) == ()  # amd64 only
    assert assets_for("akamai", "amd64", v("v1.6.0")) == ()  # from 1.7
    assert assets_for("aws", "amd64", v("v1.11.5"), secureboot=True) == ()  # no Secure Boot
