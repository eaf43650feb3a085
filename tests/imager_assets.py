"""Real inputs for the UKI/ISO tests: Debian's kernel and stubs, and a busybox marker initramfs.

The kernel .deb is downloaded once into ~/.cache/imagefactory/debs; only vmlinuz is extracted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

DEB_CACHE = Path.home() / ".cache" / "imagefactory" / "debs"
STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
SD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
BUSYBOX = Path("/bin/busybox")
SNAKEOIL_KEY = Path("/usr/share/ovmf/PkKek-1-snakeoil.key")
SNAKEOIL_CERT = Path("/usr/share/ovmf/PkKek-1-snakeoil.pem")
EPOCH = 1_700_000_000

_INIT = """#!/bin/sh
/bin/busybox mount -t proc proc /proc
echo "BOOT-OK $(/bin/busybox cat /proc/cmdline)" > /dev/console
/bin/busybox poweroff -f
"""


def _kernel_deb() -> Path:
    cached = sorted(DEB_CACHE.glob("linux-image-*-amd64_*_amd64.deb"))
    if cached:
        return cached[-1]
    depends = subprocess.run(
        ["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"Depends: (linux-image-\d\S*-amd64)$", depends, re.MULTILINE)
    if match is None:
        pytest.skip("no Debian kernel package known to apt (run apt-get update)")
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-q", match.group(1)], cwd=DEB_CACHE, check=True)
    return sorted(DEB_CACHE.glob("linux-image-*-amd64_*_amd64.deb"))[-1]


def kernel(workdir: Path) -> Path:
    """Debian's amd64 vmlinuz (a bzImage with the EFI stub)."""
    out = workdir / "vmlinuz"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(_kernel_deb()), tmp], check=True)
        found = sorted(Path(tmp, "boot").glob("vmlinuz-*"))
        shutil.copyfile(found[0], out)
    return out


def marker_initramfs(workdir: Path) -> Path:
    """A busybox initramfs whose /init prints `BOOT-OK <cmdline>` and powers off (xz, crc32)."""
    out = workdir / "initramfs.xz"
    if out.exists():
        return out
    if not BUSYBOX.is_file():
        pytest.skip("busybox-static is not installed")
    root = workdir / "initrd-root"
    for sub in ("bin", "dev", "proc", "sys"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "init").write_text(_INIT)
    (root / "init").chmod(0o755)
    for path in [root, *root.rglob("*")]:
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--owner=0:0", "--reproducible", "--quiet"],
        input=("\n".join([".", *names]) + "\n").encode(),
        cwd=root,
        capture_output=True,
        check=True,
    )
    xz = subprocess.run(
        ["xz", "--check=crc32", "-6", "-c"], input=cpio.stdout, capture_output=True, check=True
    )
    out.write_bytes(xz.stdout)
    return out


def snakeoil_key(workdir: Path) -> Path:
    """The OVMF snakeoil db key without its passphrase (`snakeoil`)."""
    out = workdir / "snakeoil.key"
    if not out.exists():
        subprocess.run(
            [
                "openssl", "rsa",
                "-in", str(SNAKEOIL_KEY),
                "-passin", "pass:snakeoil",
                "-out", str(out),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return out


def self_signed(workdir: Path, name: str) -> tuple[Path, Path]:
    """A fresh RSA key and self-signed certificate (PEM)."""
    key, cert = workdir / f"{name}.key", workdir / f"{name}.crt"
    if not key.exists():
        subprocess.run(
            [
                "openssl", "req", "-new", "-x509",
                "-newkey", "rsa:2048",
                "-nodes",
                "-subj", f"/CN={name}/",
                "-days", "3650",
                "-keyout", str(key),
                "-out", str(cert),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return key, cert


def rsa_key(workdir: Path, name: str) -> Path:
    out = workdir / f"{name}.pem"
    if not out.exists():
        subprocess.run(
            ["openssl", "genrsa", "-traditional", "-out", str(out), "2048"],
            check=True,
            capture_output=True,
        )
    return out
