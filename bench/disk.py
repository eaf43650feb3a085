"""Benchmark: hole-aware disk image compression against the plain tools on the same raw image.

Builds the sample release's metal-amd64.raw.zst, aws-amd64.raw.xz and gcp-amd64.raw.tar.gz (v1.11.5,
the default schematic) with `build_asset`, each in a fresh store, and prints the whole build's wall
time, the summed time of the tools it ran and our own share (target < 10% of the total). Then, from
the raw image each built, it times the format step alone (its own share too: with so little data
the tools finish in a fraction of a second, so this share is the harder one), bytes written, and, in
the same run, plain `zstd -18 -T0`, `xz -0 -T0` and `gzip -6` over the same raw (target: 10x slower
than ours), plus upstream's own GCP pipeline (`tar --sparse | pigz -6`). Peak RSS of this process and
of its children last (target < 300 MiB).
Run: .venv/bin/python bench/disk.py [--config CONFIG] [--version v1.11.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from imagefactory import tools
from imagefactory.build import build_asset
from imagefactory.cli import main as cli
from imagefactory.config import load_config
from imagefactory.imager.formats import finish
from imagefactory.platforms import DiskFormat, OutFormat
from imagefactory.schematic import Schematic
from imagefactory.versions import TalosVersion

CASES = (
    ("metal-amd64.raw", OutFormat.ZSTD, ["zstd", "-18", "-T0", "-q", "-c"]),
    ("aws-amd64.raw", OutFormat.XZ, ["xz", "-0", "-T0", "-c"]),
    ("gcp-amd64.raw", OutFormat.TAR_GZ, ["gzip", "-6", "-n", "-c"]),
)


def plain(argv: list[str], raw: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with raw.open("rb") as src, out.open("wb") as dst:
        subprocess.run(argv, stdin=src, stdout=dst, check=True)
    return time.perf_counter() - start, out.stat().st_size


def upstream_gcp(raw: Path, work: Path) -> tuple[float, int]:
    member = work / "disk.raw"
    member.unlink(missing_ok=True)
    member.hardlink_to(raw)
    out = work / "upstream.tar.gz"
    start = time.perf_counter()
    with out.open("wb") as dst:
        tar = subprocess.Popen(
            ["tar", "-cf", "-", "-C", str(work), "--sparse", "--sort=name", "--owner=0",
             "--group=0", "--numeric-owner", "--mtime=@0", "disk.raw"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        subprocess.run(["pigz", "-6", "--no-time", "-c"], stdin=tar.stdout, stdout=dst, check=True)
        assert tar.wait() == 0
    member.unlink()
    return time.perf_counter() - start, out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", type=Path, help="a locked config (default: a fresh sample release)"
    )
    parser.add_argument("--version", default="v1.11.5")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
        work = Path(tmp)
        config_path = args.config
        if config_path is None:
            release = work / "release"
            assert cli(["sample-release", "--out", str(release), "--versions", args.version]) == 0
            assert cli(["lock", "--config", str(release / "config.yaml")]) == 0
            config_path = release / "config.yaml"
        config = load_config(config_path)
        version = TalosVersion.parse(args.version)
        print("whole build, fresh store:")
        print(f"{'asset':<24} {'total s':>8} {'tools s':>8} {'own %':>6} {'tool runs':>9}")
        stores = {}
        for index, (asset, out_format, _) in enumerate(CASES):
            stores[asset] = dataclasses.replace(config, store=work / f"store-{index}")
            with tools.recording() as runs:
                start = time.perf_counter()
                built = build_asset(stores[asset], Schematic(), version, asset + out_format.suffix)
                total = time.perf_counter() - start
            own = 100 * (total - runs.seconds) / total
            print(
                f"{built.name:<24} {total:>8.2f} {runs.seconds:>8.2f} {own:>6.1f} {runs.calls:>9}"
            )
        print("format step alone, from the raw image:")
        print(f"{'asset':<24} {'raw GiB':>8} {'data MiB':>9} {'ours s':>7} {'tools s':>8} "
              f"{'own %':>6} {'ours MB':>8} | {'plain s':>8} {'plain MB':>9} {'speed-up':>8}")  # fmt: skip
        for asset, out_format, argv in CASES:
            raw = build_asset(stores[asset], Schematic(), version, asset)
            out = work / f"{asset}{out_format.suffix}"
            with tools.recording() as runs:
                start = time.perf_counter()
                finish(
                    raw, out, disk_format=DiskFormat.RAW, options="", out_format=out_format, epoch=0
                )
                ours = time.perf_counter() - start
            plain_s, plain_size = plain(argv, raw, work / "plain.out")
            (work / "plain.out").unlink()
            own = 100 * (ours - runs.seconds) / ours
            print(
                f"{out.name:<24} {raw.stat().st_size / 2**30:>8.2f} "
                f"{raw.stat().st_blocks * 512 / 2**20:>9.1f} {ours:>7.2f} {runs.seconds:>8.2f} "
                f"{own:>6.1f} {out.stat().st_size / 1e6:>8.2f} | {plain_s:>8.2f} "
                f"{plain_size / 1e6:>9.2f} {plain_s / ours:>7.1f}x"
            )
            if out_format is OutFormat.TAR_GZ:
                up_s, up_size = upstream_gcp(raw, work)
                print(f"{'  upstream tar|pigz':<24} {'':>8} {'':>9} {'':>7} {'':>8} {'':>6} {'':>8} | "
                      f"{up_s:>8.2f} {up_size / 1e6:>9.2f} {up_s / ours:>7.1f}x")  # fmt: skip
            out.unlink()
        me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak RSS: this process {me:.0f} MiB, largest child {children:.0f} MiB")


if __name__ == "__main__":
    main()
