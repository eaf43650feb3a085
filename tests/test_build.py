"""`imagefactory build` on the sample release: each output kind, checked with real tools,
reproducible across fresh stores, reused within one store, and refused cleanly on bad input.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from build_helpers import pcr_key, private_config, signing_pair, write_schematic

from imagefactory.cli import main
from imagefactory.config import load_config
from imagefactory.errors import InvalidInput
from imagefactory.inputs import LockedSources
from imagefactory.profile import resolve
from imagefactory.schematic import parse_schematic
from imagefactory.versions import TalosVersion

KINDS = [
    ("v1.11.5", "kernel-amd64"),
    ("v1.11.5", "cmdline-metal-amd64"),
    ("v1.11.5", "initramfs-amd64.xz"),
    ("v1.11.5", "metal-amd64-uki.efi"),
    ("v1.11.5", "metal-amd64.iso"),
    ("v1.7.7", "metal-amd64.iso"),
    ("v1.7.7", "initramfs-amd64.xz"),
    ("v1.11.5", "metal-amd64-secureboot-uki.efi"),
    ("v1.11.5", "metal-amd64-secureboot.iso"),
    ("v1.11.5", "initramfs-arm64.xz"),
    ("v1.11.5", "metal-arm64-uki.efi"),
    ("v1.11.5", "metal-arm64.iso"),
]


def build(config: Path, schematic: Path, version: str, asset: str, out: Path) -> int:
    argv = ["build", "--config", str(config), "--schematic", str(schematic)]
    return main([*argv, "--version", version, "--asset", asset, "--out", str(out)])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def two_stores(
    sample_release: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    """Every kind built into two fresh stores; returns (schematic, out A, out B)."""
    base = tmp_path_factory.mktemp("builds")
    schematic = write_schematic(base)
    key, cert = signing_pair(base, "db", "factory test db")
    sb = {
        "signingKeyPath": str(key),
        "signingCertPath": str(cert),
        "pcrKeyPath": str(pcr_key(base)),
    }
    outs = []
    for name in ("a", "b"):
        config = private_config(sample_release, base / name, secureBoot=sb)
        for version, asset in KINDS:
            assert build(config, schematic, version, asset, base / name / "out" / version) == 0
        outs.append(base / name / "out")
    return schematic, outs[0], outs[1]


@pytest.mark.parametrize(("version", "asset"), KINDS)
def test_reproducible_across_fresh_stores(
    two_stores: tuple[Path, Path, Path], version: str, asset: str
) -> None:
    _, out_a, out_b = two_stores
    assert digest(out_a / version / asset) == digest(out_b / version / asset)


def test_kernel_is_the_imagers_vmlinuz(
    two_stores: tuple[Path, Path, Path], sample_release: Path
) -> None:
    sources = LockedSources(load_config(sample_release))
    assets = sources.boot_assets(TalosVersion.parse("v1.11.5"), "amd64")
    assert (two_stores[1] / "v1.11.5/kernel-amd64").read_bytes() == assets.kernel.read_bytes()


# Upstream's 1.11 metal line (reference), the schematic's console= replacing tty0 in place, then
# META as upstream's integration test encodes {"externalIPs":["1.2.3.4"]} at key 0xa, then the rest.
EXPECTED_CMDLINE = (
    "talos.platform=metal console=ttyS0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0"
    " nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1"
    " talos.environment=INSTALLER_META_BASE64=MHhhPXsiZXh0ZXJuYWxJUHMiOlsiMS4yLjMuNCJdfQ=="
    " talos.marker=factory-test"
)


def test_cmdline_asset_is_upstreams_line_without_newline(
    two_stores: tuple[Path, Path, Path],
) -> None:
    assert (two_stores[1] / "v1.11.5/cmdline-metal-amd64").read_bytes() == EXPECTED_CMDLINE.encode()


def test_uki_sections_in_upstream_order(two_stores: tuple[Path, Path, Path]) -> None:
    out = subprocess.run(
        ["objdump", "-h", str(two_stores[1] / "v1.11.5/metal-amd64-uki.efi")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = [line.split()[1] for line in out.splitlines() if line.strip()[:1].isdigit()]
    added = [
        n for n in names if n in {".osrel", ".cmdline", ".uname", ".linux", ".initrd", ".profile"}
    ]
    assert added[:6] == [".osrel", ".cmdline", ".uname", ".linux", ".initrd", ".profile"]


@pytest.mark.parametrize(
    ("version", "expect"),
    [("v1.11.5", ["BIOS", "UEFI"]), ("v1.7.7", ["BIOS", "UEFI"])],
)
def test_iso_boot_catalog(
    two_stores: tuple[Path, Path, Path], version: str, expect: list[str]
) -> None:
    report = subprocess.run(
        ["xorriso", "-indev", str(two_stores[1] / version / "metal-amd64.iso"),
         "-report_el_torito", "plain"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for platform in expect:
        assert platform in report
    label = "TALOS_V1_11_5" if version == "v1.11.5" else None
    if label:
        info = subprocess.run(
            ["xorriso", "-indev", str(two_stores[1] / version / "metal-amd64.iso"), "-pvd_info"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert label in info


def test_same_store_reuses_the_build(sample_release: Path, tmp_path: Path) -> None:
    config = private_config(sample_release, tmp_path)
    schematic = write_schematic(tmp_path)
    assert build(config, schematic, "v1.11.5", "initramfs-amd64.xz", tmp_path / "o1") == 0
    store = tmp_path / "store" / "builds"
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}
    (tmp_path / "o1/initramfs-amd64.xz").write_bytes(b"edited by hand")
    assert build(config, schematic, "v1.11.5", "initramfs-amd64.xz", tmp_path / "o2") == 0
    after = {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}
    assert before == after  # nothing rebuilt, nothing rewritten
    # The initramfs keeps its PCR digests beside it, so every UKI made from it reuses them.
    assert len([p for p in before if p.name == "initramfs.xz.pcr-digests.json"]) == 1
    assert (tmp_path / "o2/initramfs-amd64.xz").read_bytes()[:4] != b"edit"


def test_schematic_by_id_from_the_schematics_directory(
    sample_release: Path, tmp_path: Path
) -> None:
    schematics = tmp_path / "schematics"
    schematics.mkdir()
    path = write_schematic(schematics)
    config = private_config(sample_release, tmp_path, schematics=str(schematics))
    schematic_id = parse_schematic(path.read_bytes()).id
    assert build(config, Path(schematic_id), "v1.11.5", "kernel-amd64", tmp_path / "o") == 0
    assert (tmp_path / "o/kernel-amd64").is_file()
    code = build(config, Path("0" * 64), "v1.11.5", "kernel-amd64", tmp_path / "o")
    assert code == 2


BAD = [
    (
        "customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/nope]\n",
        "v1.11.5",
        "initramfs-amd64.xz",
        'official extension "siderolabs/nope" is not available for Talos version v1.11.5',
    ),
    (
        "customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/gvisor]\n",
        "v1.7.7",
        "metal-amd64.iso",
        'extension "gvisor": version constraint >= v1.9.0 can\'t be satisfied with Talos version 1.7.7',
    ),
    ("customization: {}\n", "v1.9.0", "kernel-amd64", "version 1.9.0 is not available"),
    (
        "customization: {}\n",
        "v1.11.5",
        "metal-amd64.ssd",
        'invalid profile path: "metal-amd64.ssd"',
    ),
    ("customization: {}\n", "v1.11.5", "metal-amd64-secureboot-uki.efi", "secure boot is disabled"),
    ("customization: {}\n", "1.11", "kernel-amd64", "invalid Talos version"),
    ("customization: {unknown: 1}\n", "v1.11.5", "kernel-amd64", "field unknown not found"),
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_leaves_nothing(
    sample_release: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, str, str, str],
) -> None:
    schematic, version, asset, message = case
    config = private_config(sample_release, tmp_path)
    out = tmp_path / "out"
    code = build(config, write_schematic(tmp_path, schematic), version, asset, out)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_secure_boot_uki_is_signed_with_the_configured_key(
    sample_release: Path, tmp_path: Path
) -> None:
    key, cert = signing_pair(tmp_path, "db", "factory test db")
    pcr = pcr_key(tmp_path)
    sb = {"signingKeyPath": str(key), "signingCertPath": str(cert), "pcrKeyPath": str(pcr)}
    config = private_config(sample_release, tmp_path, secureBoot=sb)
    schematic = write_schematic(tmp_path, "customization: {}\n")
    asset = "metal-amd64-secureboot-uki.efi"
    assert build(config, schematic, "v1.11.5", asset, tmp_path / "out") == 0
    uki = tmp_path / "out" / asset
    ok = subprocess.run(
        ["sbverify", "--cert", str(cert), str(uki)], check=False, capture_output=True
    )
    assert ok.returncode == 0, ok.stderr
    other = subprocess.run(
        ["sbverify", "--cert", "/usr/share/ovmf/PkKek-1-snakeoil.pem", str(uki)],
        check=False,
        capture_output=True,
    )
    assert other.returncode != 0
    sections = subprocess.run(
        ["objdump", "-h", str(uki)], check=True, capture_output=True, text=True
    ).stdout
    assert ".pcrsig" in sections and ".pcrpkey" in sections


OVERLAY = """\
overlay:
  image: siderolabs/sbc-raspberrypi
  name: rpi_generic
  options:
    baudRate: 9600
"""


def uki_cmdline(uki: Path) -> str:
    """The first .cmdline section, read with the PE/COFF headers (binutils here knows no arm64 PE)."""
    data = uki.read_bytes()
    pe = int.from_bytes(data[0x3C:0x40], "little")
    count = int.from_bytes(data[pe + 6 : pe + 8], "little")
    table = pe + 24 + int.from_bytes(data[pe + 20 : pe + 22], "little")
    for entry in range(table, table + 40 * count, 40):
        if data[entry : entry + 8].rstrip(b"\0") == b".cmdline":
            size = int.from_bytes(data[entry + 8 : entry + 12], "little")
            start = int.from_bytes(data[entry + 20 : entry + 24], "little")
            return data[start : start + size].decode().rstrip("\0")
    raise AssertionError("no .cmdline section")


def test_overlay_kernel_args_come_from_its_installer(sample_release: Path, tmp_path: Path) -> None:
    config = private_config(sample_release, tmp_path)
    schematic = write_schematic(tmp_path, OVERLAY)
    out = tmp_path / "out"
    assert build(config, schematic, "v1.11.5", "metal-arm64-uki.efi", out) == 0
    line = uki_cmdline(out / "metal-arm64-uki.efi")
    assert "console=ttyAMA0,9600" in line and "talos.dashboard.disabled=1" in line
    # Upstream asks the overlay only for boot media: the cmdline- asset has none of its arguments.
    assert build(config, schematic, "v1.11.5", "cmdline-metal-arm64", out) == 0
    assert "ttyAMA0,9600" not in (out / "cmdline-metal-arm64").read_text()


def test_unknown_overlay_is_refused(
    sample_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = private_config(sample_release, tmp_path)
    schematic = write_schematic(tmp_path, OVERLAY.replace("rpi_generic", "nope"))
    code = build(config, schematic, "v1.11.5", "metal-arm64.iso", tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2
    assert 'official overlay "nope" is not available for Talos version v1.11.5' in err
    assert not (tmp_path / "out").exists()


def test_overlays_need_talos_1_7() -> None:
    schematic = parse_schematic(OVERLAY.encode())
    with pytest.raises(InvalidInput, match=r"overlay is not supported for Talos version v1\.6\.0"):
        resolve("metal-arm64.iso", TalosVersion.parse("1.6.0"), schematic)


def test_kernel_does_not_look_up_extensions(sample_release: Path, tmp_path: Path) -> None:
    config = private_config(sample_release, tmp_path)
    text = "customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/nope]\n"
    assert build(config, write_schematic(tmp_path, text), "v1.11.5", "kernel-amd64", tmp_path) == 0


def test_secure_boot_iso_carries_configured_enrollment_files(
    sample_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, cert = signing_pair(tmp_path, "db", "factory test db")
    auth = {}
    for name in ("PK", "KEK", "db"):
        auth[name] = tmp_path / f"{name}.auth"
        auth[name].write_bytes(f"site-made {name} update".encode())
    sb = {
        "signingKeyPath": str(key),
        "signingCertPath": str(cert),
        "pcrKeyPath": str(pcr_key(tmp_path)),
        "platformKeyPath": str(auth["PK"]),
        "keyExchangeKeyPath": str(auth["KEK"]),
        "signatureKeyPath": str(auth["db"]),
    }
    config = private_config(sample_release, tmp_path, secureBoot=sb)
    schematic = write_schematic(tmp_path, "customization: {}\n")
    asset = "metal-amd64-secureboot.iso"
    assert build(config, schematic, "v1.11.5", asset, tmp_path / "out") == 0
    iso = tmp_path / "out" / asset
    # The appended EFI partition holds loader/keys/auto/*.auth; extract it and read it with mtools.
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract_boot_images", str(tmp_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    images = sorted(p for p in tmp_path.glob("eltorito_img*") if p.stat().st_size > 1 << 20)
    images += sorted(tmp_path.glob("gpt_part*")) + sorted(tmp_path.glob("mbr_part*"))
    found = {}
    for image in images:
        for name in ("PK", "KEK", "db"):
            got = subprocess.run(
                ["mtype", "-i", str(image), f"::/loader/keys/auto/{name}.auth"],
                capture_output=True, check=False,
            )  # fmt: skip
            if got.returncode == 0:
                found[name] = got.stdout
    assert found == {n: f"site-made {n} update".encode() for n in ("PK", "KEK", "db")}, images

    del sb["signatureKeyPath"]
    config = private_config(sample_release, tmp_path / "partial", secureBoot=sb)
    assert build(config, schematic, "v1.11.5", asset, tmp_path / "out2") == 2
    assert "missing db.auth" in capsys.readouterr().err
