"""Benchmark: the initramfs with extensions — our wall time beside the summed wall time of its tools.

Builds synthetic but sizeable inputs (base initramfs, firmware, binaries, real kernel modules from
the cached Debian kernel package), then runs build_initramfs N times and prints the figures.
Run: .venv/bin/python bench/imager.py [--version 1.10.0] [--firmware-mib 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from imagefactory.imager.extensions import ExtensionTree, load_extension
from imagefactory.imager.initramfs import build_initramfs
from imagefactory.imager.toolclock import ToolClock
from imagefactory.imager.virtual import virtual_extensions
from imagefactory.quirks import Compression, quirks_for
from imagefactory.schematic import parse_schematic
from imagefactory.versions import TalosVersion

CACHE = Path.home() / ".cache/imagefactory"
EPOCH = 1_700_000_000


def kernel_files(work: Path) -> tuple[str, Path]:
    """modules.{order,builtin,builtin.modinfo}, dummy.ko, ifb.ko out of the cached kernel .deb."""
    debs = sorted(glob.glob(str(CACHE / "debs/linux-image-*-amd64_*_amd64.deb")))
    debs += sorted(glob.glob(str(CACHE / "test-kmod/debs/linux-image-*-amd64_*_amd64.deb")))
    if not debs:
        raise SystemExit("no cached Debian kernel .deb (run the imager tests once)")
    deb = Path(debs[0])
    kver = deb.name.split("_")[0].removeprefix("linux-image-")
    prefix = f"./lib/modules/{kver}"
    members = [f"{prefix}/{n}" for n in ("modules.order", "modules.builtin")]
    members += [f"{prefix}/modules.builtin.modinfo"]
    members += [f"{prefix}/kernel/drivers/net/{n}" for n in ("dummy.ko", "ifb.ko")]
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", work, *members], input=tar.stdout, check=True)
    out = work / "kernel"
    out.mkdir()
    for member in members:
        shutil.move(work / member, out / Path(member).name)
    return kver, out


def fill(path: Path, size: int, rng: random.Random) -> None:
    """Half random, half repetitive bytes: compresses like real firmware/binaries, roughly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    half = size // 2
    path.write_bytes(rng.randbytes(half) + bytes(range(256)) * ((size - half) // 256))


def make_base(work: Path, version: TalosVersion, kver: str, kfiles: Path, mib: int) -> Path:
    quirks = quirks_for(version)
    rootfs = work / "base-rootfs"
    modules = rootfs / quirks.modules_path.lstrip("/") / kver
    modules.mkdir(parents=True)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        shutil.copyfile(kfiles / name, modules / name)
    rng = random.Random(1)
    for i in range(mib):
        fill(rootfs / f"usr/lib/blob{i:03d}", 1 << 20, rng)
    archive = work / "base-cpio"
    archive.mkdir()
    subprocess.run(
        [
            "mksquashfs",
            rootfs,
            archive / "rootfs.sqsh",
            "-all-root",
            "-noappend",
            "-quiet",
            "-no-progress",
        ],
        check=True,
    )
    (archive / "init").write_text("#!/bin/sh\n")
    raw = subprocess.run(
        ["cpio", "-H", "newc", "--create", "--quiet", "-R", "+0:+0"],
        cwd=archive,
        input=b"init\nrootfs.sqsh\n",
        check=True,
        capture_output=True,
    ).stdout
    zstd = quirks.compression is Compression.ZSTD
    compress = ["zstd", "-c", "-3", "--quiet"] if zstd else ["xz", "-C", "crc32", "-0", "-c"]
    base = work / "initramfs.xz"
    base.write_bytes(subprocess.run(compress, input=raw, check=True, capture_output=True).stdout)
    return base


def extension(root: Path, name: str) -> Path:
    meta = {
        "name": name,
        "version": "v1.0.0",
        "author": "Bench",
        "description": name,
        "compatibility": {"talos": {"version": ">= v1.1.0"}},
    }
    (root / "rootfs").mkdir(parents=True, exist_ok=True)
    (root / "manifest.yaml").write_text(yaml.safe_dump({"version": "v1alpha1", "metadata": meta}))
    return root


def make_extensions(
    work: Path, version: TalosVersion, kver: str, kfiles: Path, firmware_mib: int
) -> list[ExtensionTree]:
    quirks = quirks_for(version)
    fw, mods = quirks.firmware_path.lstrip("/"), quirks.modules_path.lstrip("/")
    rng = random.Random(2)
    fw_ext = extension(work / "ext/firmware", "firmware")
    for i in range(firmware_mib * 4):
        fill(fw_ext / "rootfs" / fw / f"vendor{i % 7}/fw{i:04d}.bin", 256 << 10, rng)
    ucode = extension(work / "ext/ucode", "intel-ucode")
    for i in range(40):
        fill(ucode / "rootfs" / fw / f"intel-ucode/06-{i:02x}-01", 64 << 10, rng)
    tools = extension(work / "ext/tools", "tools")
    for i in range(200):
        fill(tools / "rootfs" / f"usr/local/bin/tool{i:03d}", 48 << 10, rng)
    kmod = extension(work / "ext/kmod", "kmod")
    for name in ("dummy.ko", "ifb.ko"):
        target = kmod / "rootfs" / mods / kver / "extras" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kfiles / name, target)
    trees = [load_extension(p) for p in (fw_ext, ucode, tools, kmod)]
    schematic = parse_schematic(b"customization:\n  extraKernelArgs: [quiet]\n")
    return trees + list(virtual_extensions(schematic, version, work / "virtual"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--version", default="1.10.0")
    parser.add_argument("--firmware-mib", type=int, default=32)
    parser.add_argument("--base-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    version = TalosVersion.parse(args.version)
    with tempfile.TemporaryDirectory(prefix="bench-imager-") as tmp:
        work = Path(tmp)
        kver, kfiles = kernel_files(work)
        base = make_base(work, version, kver, kfiles, args.base_mib)
        exts = make_extensions(work, version, kver, kfiles, args.firmware_mib)
        input_mib = sum(
            p.stat().st_size for e in exts for p in e.rootfs.rglob("*") if p.is_file()
        ) / (1 << 20)
        print(
            f"Talos {version}: base {base.stat().st_size / (1 << 20):.1f} MiB, "
            f"{len(exts)} extensions with {input_mib:.1f} MiB of files, cpus={os.cpu_count()}"
        )
        totals, tools = [], []
        for run in range(args.runs):
            clock = ToolClock()
            out = work / f"out{run}/initramfs.xz"
            start = time.perf_counter()
            build_initramfs(base, exts, version, out, epoch=EPOCH, clock=clock)
            total = time.perf_counter() - start
            totals.append(total)
            tools.append(clock.seconds)
            print(
                f"run {run}: total {total:.3f} s, tools {clock.seconds:.3f} s "
                f"({clock.calls} runs), ours {total - clock.seconds:.3f} s "
                f"= {100 * (total - clock.seconds) / total:.1f}%, "
                f"output {out.stat().st_size / (1 << 20):.1f} MiB"
            )
        total, tool = statistics.median(totals), statistics.median(tools)
        print(
            f"median: total {total:.3f} s, tools {tool:.3f} s, "
            f"own overhead {total - tool:.3f} s = {100 * (total - tool) / total:.1f}% (target < 10%)"
        )


if __name__ == "__main__":
    main()
