"""ISO builds: GRUB, sd-boot, hybrid and Secure Boot; El Torito layout, labels, files, reproducibility."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import imager_assets as assets
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.errors import InvalidInput
from imagefactory.imager import esp
from imagefactory.imager.efivars import generate_auth_files, owner_guid, supplied_auth_files
from imagefactory.imager.iso import IsoInputs, build_iso, grub_cfg, grub_quote, loader_conf
from imagefactory.imager.pesign import SecureBootSigner
from imagefactory.imager.uki import build_uki
from imagefactory.platforms import Arch
from imagefactory.profile import EnrollKeys, OutputKind
from imagefactory.schematic import Bootloader
from imagefactory.versions import TalosVersion

CMDLINE = "console=ttyS0 panic=-1 talos.platform=metal"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not assets.STUB.is_file():
        pytest.skip("systemd-boot-efi is not installed")
    return tmp_path_factory.mktemp("iso")


@pytest.fixture(scope="module")
def inputs(work: Path) -> IsoInputs:
    kernel, initramfs = assets.kernel(work), assets.marker_initramfs(work)
    uki = build_uki(stub=assets.STUB, kernel=kernel, initramfs=initramfs, cmdline=CMDLINE,
                    version=TalosVersion.parse("1.11.0"), arch=Arch.AMD64, out=work / "uki.efi",
                    epoch=assets.EPOCH, kind=OutputKind.ISO)  # fmt: skip
    return IsoInputs(kernel, initramfs, CMDLINE, uki.path, assets.SD_BOOT)


def _iso(out: Path, inputs: IsoInputs, version: str, bootloader: Bootloader, **kw: object) -> Path:
    return build_iso(out=out, version=TalosVersion.parse(version), arch=Arch.AMD64,
                     bootloader=bootloader, inputs=inputs, epoch=assets.EPOCH, **kw)  # type: ignore[arg-type]  # fmt: skip


def _el_torito(iso: Path) -> str:
    return subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


def _pvd(iso: Path) -> str:
    return subprocess.run(["xorriso", "-indev", str(iso), "-pvd_info"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


def _appended_partition_offset(iso: Path) -> int:
    """Byte offset of MBR partition 2 (the appended EFI FAT)."""
    mbr = iso.read_bytes()[:512]
    (start,) = struct.unpack_from("<I", mbr, 0x1BE + 16 + 8)
    return int(start) * 512


def _fat_read(iso: Path, fat_path: str) -> bytes:
    image = f"{iso}@@{_appended_partition_offset(iso)}"
    return subprocess.run(["mtype", "-i", image, f"::/{fat_path}"], capture_output=True,
                          check=True).stdout  # fmt: skip


def _fat_list(iso: Path) -> set[str]:
    image = f"{iso}@@{_appended_partition_offset(iso)}"
    out = subprocess.run(["mdir", "-/", "-b", "-i", image, "::/"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return {line.strip().removeprefix("::/") for line in out.splitlines() if line.strip()}


def test_grub_iso_layout_and_label(work: Path, inputs: IsoInputs) -> None:
    iso = _iso(work / "grub.iso", inputs, "1.9.0", Bootloader.GRUB)
    report = _el_torito(iso)
    assert re.search(r"El Torito boot img :\s+1\s+BIOS\s+y\s+none", report)
    assert re.search(r"El Torito boot img :\s+2\s+UEFI\s+y\s+none", report)
    assert "/boot/grub/i386-pc/eltorito.img" in report
    pvd = _pvd(iso)
    assert re.search(r"Volume Id\s*:\s*TALOS_V1_9_0$", pvd, re.MULTILINE)
    assert re.search(r"Volume Set Id\s*:\s*Talos-v1.9.0$", pvd, re.MULTILINE)
    assert re.search(r"Creation Time\s*:\s*2023111422132000$", pvd, re.MULTILINE)
    cfg = subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract",
                          "/boot/grub/grub.cfg", str(work / "grub.cfg")], capture_output=True,
                         check=True)  # fmt: skip
    assert cfg.returncode == 0
    assert (work / "grub.cfg").read_text() == grub_cfg(CMDLINE, TalosVersion.parse("1.9.0"))


def test_iso_before_1_8_has_no_talos_label(work: Path, inputs: IsoInputs) -> None:
    iso = _iso(work / "grub17.iso", inputs, "1.7.0", Bootloader.GRUB)
    assert "TALOS" not in _pvd(iso)


def test_sd_boot_iso_layout(work: Path, inputs: IsoInputs) -> None:
    iso = _iso(work / "sdboot.iso", inputs, "1.12.0", Bootloader.SD_BOOT)
    report = _el_torito(iso)
    assert re.search(r"El Torito boot img :\s+1\s+UEFI\s+y\s+none", report)
    assert "BIOS" not in report
    assert _fat_list(iso) >= {
        "EFI/BOOT/BOOTX64.EFI", "EFI/Linux/Talos-v1.12.0.efi", "loader/loader.conf",
        "loader/random-seed",
    }  # fmt: skip
    assert _fat_read(iso, "loader/loader.conf").decode() == loader_conf(EnrollKeys.OFF)
    assert _fat_read(iso, "EFI/Linux/Talos-v1.12.0.efi") == inputs.uki.read_bytes()  # type: ignore[union-attr]
    assert re.search(r"Volume Id\s*:\s*TALOS_V1_12_0$", _pvd(iso), re.MULTILINE)


def test_hybrid_iso_layout(work: Path, inputs: IsoInputs) -> None:
    iso = _iso(work / "hybrid.iso", inputs, "1.11.0", Bootloader.DUAL_BOOT)
    report = _el_torito(iso)
    assert re.search(r"El Torito boot img :\s+1\s+BIOS\s+y\s+none", report)
    assert re.search(r"El Torito boot img :\s+2\s+UEFI\s+y\s+none", report)
    assert "/boot/grub/i386-pc/eltorito.img" in report
    system_area = subprocess.run(["xorriso", "-indev", str(iso), "-report_system_area", "plain"],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "GPT" in system_area
    assert re.search(r"GPT type GUID\s*:\s*\d+\s+28732ac11ff8d211ba4b00a0c93ec93b", system_area)


def test_secureboot_iso_has_cert_and_enroll_files(work: Path, inputs: IsoInputs) -> None:
    key, cert = assets.self_signed(work, "sb")
    signer = SecureBootSigner(key, cert)
    iso = _iso(work / "sb.iso", inputs, "1.11.0", Bootloader.DUAL_BOOT, secureboot=True,
               signer=signer, enroll_keys=EnrollKeys.FORCE)  # fmt: skip
    assert "BIOS" not in _el_torito(iso)
    files = _fat_list(iso)
    assert {"EFI/keys/uki-signing-cert.der", "loader/keys/auto/PK.auth",
            "loader/keys/auto/KEK.auth", "loader/keys/auto/db.auth"} <= files  # fmt: skip
    assert _fat_read(iso, "loader/loader.conf").decode().endswith("secure-boot-enroll force\n")
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                         capture_output=True, check=True).stdout  # fmt: skip
    assert _fat_read(iso, "EFI/keys/uki-signing-cert.der") == der
    db = _fat_read(iso, "loader/keys/auto/db.auth")
    assert der in db  # the ESL inside the signed update carries the certificate


@pytest.mark.parametrize(
    ("version", "bootloader", "secureboot"),
    [("1.9.0", Bootloader.GRUB, False), ("1.12.0", Bootloader.SD_BOOT, False),
     ("1.11.0", Bootloader.DUAL_BOOT, False), ("1.11.0", Bootloader.SD_BOOT, True)],
)  # fmt: skip
def test_reproducible(  # noqa: PLR0917
    work: Path, inputs: IsoInputs, tmp_path: Path, version: str, bootloader: Bootloader,
    secureboot: bool,
) -> None:  # fmt: skip
    extra: dict[str, object] = {}
    if secureboot:
        extra = {"secureboot": True, "signer": SecureBootSigner(*assets.self_signed(work, "sb"))}
    outs = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        outs.append(_iso(tmp_path / run / "x.iso", inputs, version, bootloader, **extra))
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_grub_cfg_text() -> None:
    cfg = grub_cfg('a=1 b="x"', TalosVersion.parse("1.9.0"))
    assert cfg == (
        "set default=0\nset timeout=3\n\ninsmod all_video\n\n"
        "terminal_input console\nterminal_output console\n\n"
        'menuentry "Talos ISO" {\n\tset gfxmode=auto\n\tset gfxpayload=text\n'
        '\tlinux /boot/vmlinuz a=1 b=\\"x\\"\n\tinitrd /boot/initramfs.xz\n}\n\n'
        'menuentry "Reset Talos installation" {\n\tset gfxmode=auto\n\tset gfxpayload=text\n'
        '\tlinux /boot/vmlinuz a=1 b=\\"x\\" talos.experimental.wipe=system\n'
        "\tinitrd /boot/initramfs.xz\n}\n"
    )
    assert "Reset" not in grub_cfg("a", TalosVersion.parse("1.3.0"))


@given(st.text())
def test_grub_quote_escapes_every_special(text: str) -> None:
    quoted = grub_quote(text)
    unescaped = re.sub(r"\\(.)", r"\1", quoted, flags=re.DOTALL)
    assert unescaped == text
    assert not re.search(r'(?<!\\)[{}&$|;<>"]', quoted.replace("\\\\", ""))


def test_sectors_per_cluster() -> None:
    assert esp.sectors_per_cluster(20 * 1024 * 1024) == 1
    assert esp.sectors_per_cluster(110 * 1024 * 1024) == 2
    assert esp.sectors_per_cluster(200 * 1024 * 1024) == 4
    assert esp.sectors_per_cluster(4 * 1024 * 1024 * 1024) == 8
    with pytest.raises(InvalidInput):
        esp.sectors_per_cluster(0)


def test_owner_guid_is_v4_and_stable() -> None:
    guid = owner_guid(b"-----BEGIN CERTIFICATE-----\n")
    assert guid == owner_guid(b"-----BEGIN CERTIFICATE-----\n")
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", guid
    )


def test_auth_files_reproducible(work: Path) -> None:
    signer = SecureBootSigner(*assets.self_signed(work, "auth"))
    first = generate_auth_files(signer, work / "auth1", epoch=assets.EPOCH)
    second = generate_auth_files(signer, work / "auth2", epoch=assets.EPOCH)
    assert sorted(first) == ["KEK.auth", "PK.auth", "db.auth"]
    for name in first:
        assert first[name].read_bytes() == second[name].read_bytes()
        # EFI_TIME at the start of the EFI_VARIABLE_AUTHENTICATION_2 header: 2023-11-14 22:13:20.
        assert first[name].read_bytes()[:7] == bytes.fromhex("e7070b0e160d14")


def test_bad_inputs(work: Path, inputs: IsoInputs) -> None:
    with pytest.raises(InvalidInput, match="UKI"):
        _iso(work / "e.iso", IsoInputs(sd_boot=assets.SD_BOOT), "1.12.0", Bootloader.SD_BOOT)
    with pytest.raises(InvalidInput, match="kernel"):
        _iso(work / "e.iso", IsoInputs(initramfs=inputs.initramfs), "1.9.0", Bootloader.GRUB)
    with pytest.raises(InvalidInput, match="signing certificate"):
        _iso(work / "e.iso", inputs, "1.11.0", Bootloader.SD_BOOT, secureboot=True)
    with pytest.raises(InvalidInput, match="amd64 only"):
        build_iso(out=work / "e.iso", version=TalosVersion.parse("1.11.0"), arch=Arch.ARM64,
                  bootloader=Bootloader.DUAL_BOOT, inputs=inputs, epoch=0)  # fmt: skip
    with pytest.raises(InvalidInput, match=r"missing KEK\.auth, db\.auth"):
        supplied_auth_files(work / "pk", None, None)
    assert supplied_auth_files(None, None, None) is None
    assert not (work / "e.iso").exists()


@pytest.mark.parametrize(
    ("version", "bootloader"), [("1.12.0", Bootloader.SD_BOOT), ("1.11.0", Bootloader.DUAL_BOOT)]
)
def test_stamped_inputs_are_linked_with_the_same_iso(
    inputs: IsoInputs, tmp_path: Path, version: str, bootloader: Bootloader
) -> None:
    """Inputs already stamped with the epoch are hard-linked, not copied: same ISO bytes."""
    isos, stamped = [], []
    for run in ("copied", "linked"):
        (tmp_path / run).mkdir()
        copies = []
        for source in (inputs.kernel, inputs.initramfs, inputs.uki):
            assert source is not None
            copy = tmp_path / run / source.name
            shutil.copyfile(source, copy)
            if run == "linked":
                os.utime(copy, (assets.EPOCH, assets.EPOCH))
            copies.append(copy)
        kernel, initramfs, uki = copies
        run_inputs = IsoInputs(kernel, initramfs, CMDLINE, uki, assets.SD_BOOT)
        isos.append(_iso(tmp_path / run / "x.iso", run_inputs, version, bootloader).read_bytes())
        stamped = copies
    assert isos[0] == isos[1]
    for path in stamped:
        after = path.stat()
        assert after.st_nlink == 1, "the scratch link outlived the build"
        assert after.st_mtime_ns == assets.EPOCH * 1_000_000_000


def test_place_links_only_what_a_copy_could_not_tell_apart(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.write_bytes(b"uki")
    esp.place(source, tmp_path / "copied", epoch=assets.EPOCH)
    assert not (tmp_path / "copied").samefile(source)
    os.utime(source, (assets.EPOCH, assets.EPOCH))
    esp.place(source, tmp_path / "linked", epoch=assets.EPOCH)
    assert (tmp_path / "linked").samefile(source)
    source.chmod(0o444)
    esp.place(source, tmp_path / "read-only", epoch=assets.EPOCH)
    assert not (tmp_path / "read-only").samefile(source)
    assert [(tmp_path / n).read_bytes() for n in ("copied", "linked", "read-only")] == [b"uki"] * 3
    with pytest.raises(FileExistsError):
        esp.place(source, tmp_path / "linked", epoch=assets.EPOCH)
