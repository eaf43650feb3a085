"""Network boot end to end under qemu (TCG, slirp): the NIC ROM's iPXE fetches our PXE script over
HTTP, or a chain script from our TFTP server, and boots the sample kernel and initramfs it names,
built on demand; the sample init's markers on the serial console prove what booted."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from serving import Served, post_schematic

from imagefactory.sample.init import MARKER, BootReport, parse_markers
from imagefactory.schematic import parse_schematic

pytestmark = pytest.mark.boot

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 240.0
GUEST_HOST = "10.0.2.2"  # slirp's address for the host's loopback
MAC = "52:54:00:12:34:56"  # qemu's default NIC address
SCHEMATIC = """\
customization:
  extraKernelArgs:
    - console=ttyS0
    - talos.marker=pxe-test
  systemExtensions:
    officialExtensions:
      - siderolabs/iscsi-tools
"""
SCHEMATIC_ID = parse_schematic(SCHEMATIC.encode()).id


@pytest.fixture(scope="module")
def pxe_server(server_factory: Callable[..., Served]) -> Served:
    from serving import free_port

    port = free_port()
    served = server_factory(
        http_port=port,
        external_url=f"http://{GUEST_HOST}:{port}",
        pxe={
            "default": {"schematic": SCHEMATIC_ID, "version": "v1.11.5"},
            "hosts": {MAC: {"schematic": SCHEMATIC_ID, "version": "v1.7.7"}},
        },
    )
    assert post_schematic(served, SCHEMATIC) == SCHEMATIC_ID
    return served


def net_boot(bootfile: str, log: Path) -> BootReport:
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed")
    argv = [
        QEMU,
        "-accel", "tcg",
        "-m", "512",
        "-nographic",
        "-no-reboot",
        "-boot", "n",
        "-netdev", f"user,id=n0,bootfile={bootfile}",
        "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
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
            proc.kill()
            proc.wait()
            log.write_bytes(bytes(output))
    return parse_markers(bytes(output))


def test_ipxe_boots_the_http_pxe_script(pxe_server: Served, tmp_path: Path) -> None:
    port = pxe_server.url.rsplit(":", 1)[1]
    script = f"http://{GUEST_HOST}:{port}/pxe/{SCHEMATIC_ID}/v1.11.5/metal-x86_64"
    report = net_boot(script, tmp_path / "serial.log")
    serial = (tmp_path / "serial.log").read_text(errors="replace")
    assert report.done, serial[-3000:]
    assert report.version == "v1.11.5"
    assert report.cmdline is not None and "talos.marker=pxe-test" in report.cmdline
    assert "talos.platform=metal" in report.cmdline
    assert report.extensions_yaml is not None and b"name: iscsi-tools" in report.extensions_yaml


def test_ipxe_boots_through_the_tftp_chain(pxe_server: Served, tmp_path: Path) -> None:
    """boot.ipxe over our TFTP, then the per-MAC script (v1.7.7, not the default v1.11.5)."""
    report = net_boot(
        f"tftp://{GUEST_HOST}:{pxe_server.tftp_port}/boot.ipxe", tmp_path / "serial.log"
    )
    serial = (tmp_path / "serial.log").read_text(errors="replace")
    assert report.done, serial[-3000:]
    assert report.version == "v1.7.7"
    assert report.cmdline is not None and "talos.marker=pxe-test" in report.cmdline
