"""Boots the sample kernel and initramfs under qemu (TCG) and reads the init's serial markers.

The zstd case also appends an extensions cpio and prepends a microcode cpio, as the imager does.
"""

from __future__ import annotations

import hashlib
import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from imagefactory.platforms import Arch
from imagefactory.sample import tree
from imagefactory.sample.debian import debian_parts
from imagefactory.sample.imager import build_assets
from imagefactory.sample.init import MARKER, QUIET_PROBE, BootReport, parse_markers
from imagefactory.sample.versions import SampleVersion

pytestmark = pytest.mark.boot

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 180.0


def boot(kernel: Path, initrd: Path, cmdline: str, log: Path) -> BootReport:
    """Direct-boot under TCG; stop as soon as the init says done (it powers off right after)."""
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed")
    argv = [
        QEMU,
        "-accel", "tcg",
        "-m", "512",
        "-nographic",
        "-no-reboot",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", cmdline,
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    output = bytearray()
    deadline = time.monotonic() + BOOT_TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline and f"{MARKER} done".encode() not in output:
                if not sel.select(timeout=1.0):
                    if proc.poll() is not None:
                        break
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                output += chunk
        finally:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            output += proc.stdout.read()
            log.write_bytes(bytes(output))
    return parse_markers(bytes(output))


def test_xz_initramfs_prints_cmdline(tmp_path: Path) -> None:
    version = SampleVersion.parse("v1.7.7")
    parts = debian_parts(Arch.AMD64)
    assets = build_assets(version, parts, tmp_path / "assets")
    # No `quiet`: Talos command lines have none, so info-level messages reach the console.
    cmdline = "console=ttyS0 panic=-1 talos.platform=metal sample.nonce=xz1"
    report = boot(assets.vmlinuz, assets.initramfs, cmdline, tmp_path / "serial.log")
    log = (tmp_path / "serial.log").read_text(errors="replace")
    assert report.done, log[-2000:]
    # Kernel messages are off the console before the first marker: none can split a marker line.
    assert QUIET_PROBE not in log
    assert report.version == "v1.7.7" and report.arch == "amd64"
    assert report.cmdline == cmdline
    assert report.extensions_yaml is None
    rootfs = (tmp_path / "assets/rootfs.sqsh").read_bytes()
    assert report.sqsh == (("rootfs.sqsh", hashlib.sha256(rootfs).hexdigest()),)
    assert report.microcode == ()


def test_zstd_initramfs_with_extensions_and_microcode(tmp_path: Path) -> None:
    version = SampleVersion.parse("v1.13.0")
    parts = debian_parts(Arch.AMD64)
    assets = build_assets(version, parts, tmp_path / "assets")
    epoch = version.source_date_epoch

    # What the imager appends: extension squashfs images and extensions.yaml, compressed.
    ext_tree = tree.materialize(
        [tree.file("usr/local/share/hello", "hello\n")], tmp_path / "ext0", epoch
    )
    staging = tmp_path / "staging"
    staging.mkdir()
    tree.mksquashfs(ext_tree, staging / "0.sqsh", version.quirks.squashfs_compression_args, epoch)
    extensions_yaml = b"layers:\n  - image: 0.sqsh\n    metadata:\n      name: hello\n"
    (staging / "extensions.yaml").write_bytes(extensions_yaml)
    tree.fix_tree(staging, epoch)
    appended = tree.compress(
        tree.cpio_newc(staging, tmp_path / "ext.cpio"),
        tmp_path / "ext.cpio.zst",
        version.compression,
    )
    # What it prepends: an uncompressed cpio of CPU microcode.
    micro = tree.materialize(
        [tree.file("kernel/x86/microcode/GenuineIntel.bin", b"\0" * 3000)], tmp_path / "mc", epoch
    )
    prepended = tree.cpio_newc(micro, tmp_path / "mc.cpio")
    initrd = tmp_path / "initramfs.xz"
    initrd.write_bytes(
        prepended.read_bytes() + assets.initramfs.read_bytes() + appended.read_bytes()
    )

    cmdline = "console=ttyS0 quiet panic=-1 talos.platform=metal sample.nonce=zstd1"
    report = boot(assets.vmlinuz, initrd, cmdline, tmp_path / "serial.log")
    assert report.done, (tmp_path / "serial.log").read_text(errors="replace")[-2000:]
    assert report.version == "v1.13.0"
    assert report.cmdline == cmdline
    assert report.extensions_yaml == extensions_yaml
    sqsh = dict(report.sqsh)
    assert set(sqsh) == {"0.sqsh", "rootfs.sqsh"}
    assert sqsh["0.sqsh"] == hashlib.sha256((staging / "0.sqsh").read_bytes()).hexdigest()
    assert report.microcode == (("/kernel/x86/microcode/GenuineIntel.bin", 3000),)


def test_markers_reach_ttys0_when_the_console_is_elsewhere(tmp_path: Path) -> None:
    version = SampleVersion.parse("v1.9.6")
    assets = build_assets(version, debian_parts(Arch.AMD64), tmp_path / "assets")
    cmdline = "console=tty0 quiet panic=-1 sample.nonce=tty0"
    report = boot(assets.vmlinuz, assets.initramfs, cmdline, tmp_path / "serial.log")
    assert report.done, (tmp_path / "serial.log").read_text(errors="replace")[-2000:]
    assert report.cmdline == cmdline
