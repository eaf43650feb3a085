"""The sample init script: its shell syntax, the markers it prints, and their parser."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.errors import InvalidInput
from imagefactory.sample.init import MARKER, BootReport, init_script, parse_markers

BUSYBOX = shutil.which("busybox")
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed")


def run_init(root: Path, version: str = "v1.9.6", arch: str = "amd64") -> str:
    """Run the real init script, not as PID 1, against a fake root; it prints to stdout."""
    script = root.parent / "init"
    script.write_bytes(init_script(version, arch))
    assert BUSYBOX is not None
    proc = subprocess.run(
        [BUSYBOX, "sh", str(script), str(root)], capture_output=True, check=True, timeout=30
    )
    return proc.stdout.decode()


def make_root(tmp_path: Path, cmdline: str) -> Path:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cmdline").write_text(cmdline + "\n")
    return root


@needs_busybox
@pytest.mark.parametrize("shell", ["busybox", "dash"])
def test_script_is_valid_sh(tmp_path: Path, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    script = tmp_path / "init"
    script.write_bytes(init_script("v1.13.0", "arm64"))
    argv = [shell, "sh", "-n", str(script)] if shell == "busybox" else [shell, "-n", str(script)]
    subprocess.run(argv, check=True, timeout=30)
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "version=v1.13.0\n" in text and "arch=arm64\n" in text
    # Only busybox applets through $bb (the initramfs has no other binaries) and a hard poweroff.
    assert "$bb poweroff -f" in text


@needs_busybox
def test_markers_of_a_full_root(tmp_path: Path) -> None:
    root = make_root(tmp_path, "console=ttyS0 talos.platform=metal foo=bar baz")
    ext = b"layers:\n  - image: 0.sqsh\n    metadata:\n      name: iscsi-tools\n"
    (root / "extensions.yaml").write_bytes(ext)
    sqsh = {"rootfs.sqsh": b"rootfs" * 100, "0.sqsh": b"zero", "1.sqsh": b"one"}
    for name, data in sqsh.items():
        (root / name).write_bytes(data)
    (root / "notes.txt").write_text("not a squashfs")
    micro = root / "kernel" / "x86" / "microcode"
    micro.mkdir(parents=True)
    (micro / "GenuineIntel.bin").write_bytes(b"\x01" * 5120)
    (micro / "AuthenticAMD.bin").write_bytes(b"\x02" * 7)

    out = run_init(root, "v1.11.5", "amd64")
    assert all(line.startswith(f"{MARKER} ") for line in out.splitlines())
    assert out.splitlines()[-1] == f"{MARKER} done"
    report = parse_markers(out)
    assert report == BootReport(
        version="v1.11.5",
        arch="amd64",
        cmdline="console=ttyS0 talos.platform=metal foo=bar baz",
        extensions_yaml=ext,
        sqsh=tuple(
            (name, hashlib.sha256(sqsh[name]).hexdigest())
            for name in ("0.sqsh", "1.sqsh", "rootfs.sqsh")
        ),
        microcode=(
            ("/kernel/x86/microcode/AuthenticAMD.bin", 7),
            ("/kernel/x86/microcode/GenuineIntel.bin", 5120),
        ),
        done=True,
    )


@needs_busybox
def test_markers_of_a_bare_root(tmp_path: Path) -> None:
    root = make_root(tmp_path, "quiet")
    report = parse_markers(run_init(root))
    assert report.cmdline == "quiet"
    assert report.extensions_yaml is None
    assert report.sqsh == ()
    assert report.microcode == ()
    assert report.done


@needs_busybox
@settings(max_examples=25, deadline=None)
@given(
    cmdline=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80
    ).map(lambda s: s.replace("\\", "/")),
    ext=st.binary(max_size=600),
)
def test_script_round_trips_any_cmdline_and_extensions(
    tmp_path_factory: pytest.TempPathFactory, cmdline: str, ext: bytes
) -> None:
    root = make_root(tmp_path_factory.mktemp("r"), cmdline)
    (root / "extensions.yaml").write_bytes(ext)
    report = parse_markers(run_init(root))
    assert report.cmdline == cmdline
    assert report.extensions_yaml == ext


def test_parser_ignores_noise_and_duplicates() -> None:
    digest = "ab" * 32
    log = (
        "SeaBIOS (version 1.16)\r\n"
        "[    0.000000] Linux version 6.1.0\r\n"
        f"\x1bc\x1b[?7l\x1b[2J{MARKER} version: v1.7.7 amd64\r\n"
        f"{MARKER} cmdline: console=ttyS0 quiet\r\n"
        f"{MARKER} cmdline: console=ttyS0 quiet\r\n"
        f"{MARKER} extensions.yaml: {base64.b64encode(b'layers: []').decode()}\n"
        f"{MARKER} sqsh: rootfs.sqsh {digest}\n"
        f"{MARKER} sqsh: rootfs.sqsh {digest}\n"
        f"[    1.2] random: crng init done\n"
        f"{MARKER} microcode: /kernel/x86/microcode/GenuineIntel.bin 42\n"
        f"{MARKER} done\r\n"
        "[    1.3] reboot: Power down\n"
    )
    report = parse_markers(log.encode())
    assert report.version == "v1.7.7" and report.arch == "amd64"
    assert report.cmdline == "console=ttyS0 quiet"
    assert report.extensions_yaml == b"layers: []"
    assert report.sqsh == (("rootfs.sqsh", digest),)
    assert report.microcode == (("/kernel/x86/microcode/GenuineIntel.bin", 42),)
    assert report.done


def test_parser_of_an_unfinished_log() -> None:
    report = parse_markers(f"{MARKER} cmdline: a b\n[ 3.0] Kernel panic\n")
    assert report.cmdline == "a b"
    assert not report.done
    assert parse_markers("") == BootReport()


@pytest.mark.parametrize(
    "line",
    [
        f"{MARKER} sqsh: rootfs.sqsh nothex",
        f"{MARKER} sqsh: rootfs {'a' * 64}",
        f"{MARKER} microcode: relative/path 3",
        f"{MARKER} microcode: /kernel/x86/microcode/x big",
        f"{MARKER} extensions.yaml: not*base64",
        f"{MARKER} version: v1.9.6",
    ],
)
def test_parser_rejects_malformed_markers(line: str) -> None:
    with pytest.raises(InvalidInput, match="malformed marker line"):
        parse_markers(line + "\n")
