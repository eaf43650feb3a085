"""Benchmark: planning the matrix, the factory's planner beside a plain Snakemake `rule all`.

Makes N schematics x M versions whose cells are all published (the planner's own manifests, 60
assets per cell, no real builds) and prints wall time and peak RSS of
  - a no-change run (nothing stale: the run ends without building or writing anything),
  - a run with one new schematic (its M cells stale; a dry run: planned, not built),
for 100x10 and 1000x10 cells, and beside them the same two runs of a plain Snakemake workflow whose
`rule all` lists every asset file of the 100x10 tree (reference/snakemake.md's layout).
Targets: under 10 s and 500 MiB for 1000x10.

Run: .venv/bin/python bench/plan.py [--sizes 100x10,1000x10] [--baseline 100x10] [--assets 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from imagefactory import tree
from imagefactory.config import load_config
from imagefactory.plan import make_plan
from imagefactory.publish.generations import assemble
from imagefactory.schematic import parse_schematic

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_mib: float
    output: str


def measure(argv: Sequence[str], cwd: Path) -> Measured:
    """Wall time and peak RSS (the largest of the process tree's, from wait4) of one command."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{output[-3000:]}"
        )
    return Measured(seconds, usage.ru_maxrss / 1024, output)


def schematic_yaml(index: int) -> bytes:
    """A distinct, valid schematic per index (its own kernel argument)."""
    return f"customization:\n  extraKernelArgs:\n    - bench.index={index}\n".encode()


def schematic_ids(count: int, start: int = 0) -> list[tuple[int, str]]:
    return [(i, parse_schematic(schematic_yaml(i)).id) for i in range(start, start + count)]


def asset_names(count: int) -> list[str]:
    """`count` upstream-shaped asset names (platform x arch x kind)."""
    kinds = ("{p}-{a}.raw.zst", "{p}-{a}.qcow2", "{p}-{a}-secureboot.raw.zst", "{p}-{a}.iso")
    names = [f"kernel-{a}" for a in ("amd64", "arm64")]
    names += [f"initramfs-{a}.xz" for a in ("amd64", "arm64")]
    platforms = ("metal", "aws", "gcp", "azure", "openstack", "vmware", "nocloud", "hcloud")
    for p in platforms:
        for a in ("amd64", "arm64"):
            names += [kind.format(p=p, a=a) for kind in kinds]
    return names[:count]


def versions(count: int) -> list[str]:
    return [f"v1.11.{patch}" for patch in range(count)]  # one minor: the same targets per cell


# -- the plain Snakemake baseline ----------------------------------------------------------------

BASELINE_SNAKEFILE = """\
import json

CELLS = json.load(open(config["targets"]))

rule all:
    input: CELLS

rule asset:
    input: "schematics/{id}.yaml"
    output: "public/image/{id}/{vtag}/{asset}"
    shell: "touch {output}"
"""


def baseline_tree(root: Path, n: int, m: int, assets: int) -> list[str]:
    """N schematic files and every asset file of N x M cells, each newer than its schematic."""
    (root / "schematics").mkdir(parents=True)
    (root / "Snakefile").write_text(BASELINE_SNAKEFILE)
    paths = []
    old = time.time() - 3600
    for index, schematic_id in schematic_ids(n):
        source = root / "schematics" / f"{schematic_id}.yaml"
        source.write_bytes(schematic_yaml(index))
        os.utime(source, (old, old))
        for version in versions(m):
            cell = root / "public" / tree.image_path(schematic_id, version, "")
            cell.mkdir(parents=True)
            for name in asset_names(assets):
                (cell / name).touch()
                paths.append(f"public/{tree.image_path(schematic_id, version, name)}")
    return paths


def run_baseline(n: int, m: int, assets: int) -> list[tuple[str, Measured]]:
    with tempfile.TemporaryDirectory(prefix="bench-plan-baseline-") as tmp:
        root = Path(tmp)
        paths = baseline_tree(root, n, m, assets)
        targets = root / "targets.json"
        targets.write_text(json.dumps(paths))
        argv = [
            str(SNAKEMAKE),
            "all",
            "-c",
            "2",
            "--quiet",
            "progress",
            "--config",
            f"targets={targets}",
        ]
        no_change = measure(argv, root)
        if "Nothing to be done" not in no_change.output and "asset" in no_change.output:
            raise SystemExit(f"baseline no-change run built something:\n{no_change.output[-2000:]}")
        ((index, schematic_id),) = schematic_ids(1, start=n)
        (root / "schematics" / f"{schematic_id}.yaml").write_bytes(schematic_yaml(index))
        paths += [
            f"public/{tree.image_path(schematic_id, version, name)}"
            for version in versions(m)
            for name in asset_names(assets)
        ]
        targets.write_text(json.dumps(paths))
        new = measure([*argv, "--dry-run"], root)
        return [("no change", no_change), ("one new schematic (dry run)", new)]


# -- the factory: its config, its planner, its generation records ----------------------------------

# Platform rows whose targets add up to 60 per cell (without Secure Boot; kernel, initramfs and
# installer are shared between rows): the planner's count is printed beside the figures.
ROWS_60 = (
    "metal",
    "nocloud",
    "openstack",
    "equinixMetal",
    "vultr",
    "vmware",
    "opennebula",
    "scaleway",
    "aws",
)


def sample_release(work: Path) -> dict[str, object]:
    """One version of the sample release, locked, as the stand-in for upstream; its config."""
    out = work / "sample"
    for command in (
        ["sample-release", "--out", str(out), "--versions", "v1.11.5"],
        ["lock", "--config", str(out / "config.yaml")],
    ):
        done = subprocess.run(
            [str(REPO / ".venv/bin/imagefactory"), *command],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"imagefactory {command[0]} failed: {done.stderr[-2000:]}")
    config: dict[str, object] = yaml.safe_load((out / "config.yaml").read_text())
    return config


def factory_tree(
    root: Path, sample: Path, sample_config: dict[str, object], n: int, m: int
) -> Path:
    """A factory of N schematics and M versions, every cell published (keys in the planner's
    records, written by the publisher's own `assemble`); returns its config file."""
    (root / "schematics").mkdir(parents=True)
    for index, _ in schematic_ids(n):
        (root / "schematics" / f"s{index:05d}.yaml").write_bytes(schematic_yaml(index))
    tags = versions(m)
    lock = json.loads((sample / "sources.lock.json").read_text())
    entry = lock["versions"]["v1.11.5"]
    lock["versions"] = {tag: entry for tag in tags}  # M versions of the same locked sources
    (root / "sources.lock.json").write_text(json.dumps(lock))
    sources = dict(sample_config["sources"])  # type: ignore[call-overload]
    sources["registry"] = f"oci-layout:{sample / 'oci'}"
    sources["verify"] = {"publicKey": str(sample / "cosign.pub")}
    config = {
        "sources": sources,
        "versions": {"list": tags, "broken": []},
        "schematics": "schematics",
        "store": "store",
        "public": "public",
        "targets": {"versions": tags, "platforms": [{"platform": p} for p in ROWS_60]},
        "publish": {"signingKeyPath": str(sample / "cosign.key")},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    loaded = load_config(path)
    plan = make_plan(loaded, published={})
    per_cell = {len(c.targets) for c in plan.cells}
    cells = {c.cell_id: {"key": c.key, "files": {}} for c in plan.cells}
    keys = {"site": plan.site_key, "cells": {cid: c["key"] for cid, c in cells.items()}}
    assemble(loaded, {}, {"site": {"key": plan.site_key, "files": {}}, "cells": cells}, keys, {})
    print(
        f"  made {n}x{m}: {len(cells)} cells, {sorted(per_cell)} targets per cell", file=sys.stderr
    )
    return path


def run_factory(
    work: Path, sample_config: dict[str, object], n: int, m: int
) -> list[tuple[str, Measured]]:
    with tempfile.TemporaryDirectory(prefix=f"bench-plan-{n}x{m}-", dir=work) as tmp:
        root = Path(tmp)
        config = factory_tree(root, work / "sample", sample_config, n, m)
        argv = [str(SNAKEMAKE), "-c", "2", "--configfile", str(config)]
        before = sorted(p.name for p in (root / "store" / "generations").iterdir())
        no_change = measure(argv, REPO)
        if "all published" not in no_change.output:
            raise SystemExit(f"no-change run planned work:\n{no_change.output[-2000:]}")
        after = sorted(p.name for p in (root / "store" / "generations").iterdir())
        if after != before:
            raise SystemExit(f"no-change run wrote a generation: {before} -> {after}")
        (root / "schematics" / "new.yaml").write_bytes(schematic_yaml(n))
        new = measure([*argv, "--dry-run"], REPO)
        if f"{m} of {n * m + m} cells to build" not in new.output:
            raise SystemExit(f"one new schematic, unexpected plan:\n{new.output[-2000:]}")
        return [("no change", no_change), ("one new schematic (dry run)", new)]


def report(label: str, rows: list[tuple[str, Measured]]) -> None:
    for what, got in rows:
        print(f"{label:<34} {what:<30} {got.seconds:8.2f} s {got.peak_mib:9.1f} MiB")


def parse_size(text: str) -> tuple[int, int]:
    n, _, m = text.partition("x")
    return int(n), int(m)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100x10,1000x10")
    parser.add_argument("--baseline", default="100x10", help="sizes of the plain Snakemake runs")
    parser.add_argument("--assets", type=int, default=60)
    args = parser.parse_args()
    print(f"{'':<34} {'run':<30} {'wall':>10} {'peak RSS':>13}")
    sizes = [parse_size(size) for size in filter(None, args.sizes.split(","))]
    if sizes:
        with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
            work = Path(tmp)
            sample_config = sample_release(work)
            for n, m in sizes:
                report(f"factory planner {n}x{m}", run_factory(work, sample_config, n, m))
    for size in filter(None, args.baseline.split(",")):
        n, m = parse_size(size)
        report(f"plain snakemake rule all {n}x{m}", run_baseline(n, m, args.assets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
