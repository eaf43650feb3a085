"""Benchmark: the initramfs with extensions and every ISO kind — our wall time beside our tools'.

Builds synthetic but sizeable inputs (base initramfs, firmware, binaries, real kernel modules from
the cached Debian kernel package) and the initramfs from them, then the UKI + ISO of each kind
(GRUB, sd-boot, hybrid, Secure Boot with a PCR key) from that initramfs and the real Debian kernel.
Prints per kind the medians of N runs: total, summed tool time and our own share (target < 10%).
The initramfs row includes hashing it for PCR 11 (its digests sidecar, as in the store); the ISO
rows use that initramfs, so the Secure Boot UKI reads those digests instead of hashing ~55 MiB.
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
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import imager_assets as assets

from imagefactory import tools
from imagefactory.imager.extensions import ExtensionTree, load_extension
from imagefactory.imager.initramfs import build_initramfs
from imagefactory.imager.iso import IsoInputs, build_iso
from imagefactory.imager.pesign import SecureBootSigner
from imagefactory.imager.uki import build_uki
from imagefactory.imager.virtual import virtual_extensions
from imagefactory.platforms import Arch
from imagefactory.profile import OutputKind
from imagefactory.quirks import Compression, quirks_for
from imagefactory.schematic import Bootloader, parse_schematic
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
    bins = extension(work / "ext/tools", "tools")
    for i in range(200):
        fill(bins / "rootfs" / f"usr/local/bin/tool{i:03d}", 48 << 10, rng)
    kmod = extension(work / "ext/kmod", "kmod")
    for name in ("dummy.ko", "ifb.ko"):
        target = kmod / "rootfs" / mods / kver / "extras" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kfiles / name, target)
    trees = [load_extension(p) for p in (fw_ext, ucode, bins, kmod)]
    schematic = parse_schematic(b"customization:\n  extraKernelArgs: [quiet]\n")
    return trees + list(virtual_extensions(schematic, version, work / "virtual"))


@dataclass(frozen=True)
class Run:
    total: float
    tools: float
    calls: int

    @property
    def own(self) -> float:
        return self.total - self.tools


@dataclass(frozen=True)
class IsoCase:
    name: str
    version: str
    bootloader: Bootloader
    secureboot: bool = False


ISO_CASES = (
    IsoCase("iso-grub", "1.9.0", Bootloader.GRUB),
    IsoCase("iso-sd-boot", "1.12.0", Bootloader.SD_BOOT),
    IsoCase("iso-hybrid", "1.11.0", Bootloader.DUAL_BOOT),
    IsoCase("iso-secureboot", "1.11.0", Bootloader.SD_BOOT, secureboot=True),
)


def measure(build: Callable[[], Path]) -> tuple[Run, Path]:
    """Time `build()` and, through tools.recording, every tool it runs."""
    start = time.perf_counter()
    with tools.recording() as ran:
        out = build()
    return Run(time.perf_counter() - start, ran.seconds, ran.calls), out


def iso_build(
    case: IsoCase, work: Path, kernel: Path, initramfs: Path, keys: tuple[SecureBootSigner, Path]
) -> Callable[[], Path]:
    """The UKI (unless the ISO is GRUB-only, as in imagefactory.build) and then the ISO."""
    version = TalosVersion.parse(case.version)
    cmdline = "console=ttyS0 talos.platform=metal"
    signer, pcr_key = keys

    def build() -> Path:
        uki = None
        if case.bootloader is not Bootloader.GRUB or case.secureboot:
            uki = build_uki(
                stub=assets.STUB,
                kernel=kernel,
                initramfs=initramfs,
                cmdline=cmdline,
                version=version,
                arch=Arch.AMD64,
                out=work / "uki.efi",
                epoch=EPOCH,
                kind=OutputKind.ISO,
                signer=signer if case.secureboot else None,
                pcr_key=pcr_key if case.secureboot else None,
            ).path
        return build_iso(
            out=work / f"{case.name}.iso",
            version=version,
            arch=Arch.AMD64,
            bootloader=case.bootloader,
            inputs=IsoInputs(kernel, initramfs, cmdline, uki, assets.SD_BOOT),
            epoch=EPOCH,
            secureboot=case.secureboot,
            signer=signer if case.secureboot else None,
        )

    return build


def report(name: str, runs: list[Run], size: int) -> None:
    """One row; each column is the median over the runs on its own."""
    total = statistics.median(r.total for r in runs)
    tool = statistics.median(r.tools for r in runs)
    own = statistics.median(r.own for r in runs)
    share = statistics.median(100 * r.own / r.total for r in runs)
    print(
        f"{name:<16}{total:>9.3f}{tool:>9.3f}{runs[0].calls:>7}{own:>8.3f}{share:>7.1f}%"
        f"{size / (1 << 20):>9.1f}"
    )


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
        kernel = assets.kernel(work)
        keys = (SecureBootSigner(*assets.self_signed(work, "bench")), assets.rsa_key(work, "pcr"))
        input_mib = sum(
            p.stat().st_size for e in exts for p in e.rootfs.rglob("*") if p.is_file()
        ) / (1 << 20)
        print(
            f"Talos {version}: base {base.stat().st_size / (1 << 20):.1f} MiB, "
            f"{len(exts)} extensions with {input_mib:.1f} MiB of files, "
            f"kernel {kernel.stat().st_size / (1 << 20):.1f} MiB, cpus={os.cpu_count()}, "
            f"medians of {args.runs} runs"
        )
        print(
            f"{'kind':<16}{'total s':>9}{'tools s':>9}{'runs':>7}{'own s':>8}{'own %':>8}{'MiB':>9}"
        )
        runs = []
        for run in range(args.runs):
            out = work / f"initramfs{run}/initramfs.xz"
            result, _ = measure(partial(build_initramfs, base, exts, version, out, epoch=EPOCH))
            runs.append(result)
        report("initramfs", runs, out.stat().st_size)
        initramfs = out
        for case in ISO_CASES:
            runs = []
            for run in range(args.runs):
                # Each run writes into a new directory, as the store does; deleting the previous
                # run's files is no part of a build, so it happens outside the timed call.
                run_dir = work / case.name / str(run)
                run_dir.mkdir(parents=True)
                result, iso = measure(iso_build(case, run_dir, kernel, initramfs, keys))
                runs.append(result)
                size = iso.stat().st_size
                shutil.rmtree(run_dir)
            report(case.name, runs, size)


if __name__ == "__main__":
    main()
