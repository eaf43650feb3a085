#!/usr/bin/env python3
"""Mutation testing (mutmut) over the modules where a silent bug costs most; prints kill rates.

Not part of CI (it is slow). Each module group runs in its own copy of the tracked tree (mutmut
writes mutants/ beside the code), niced and time-boxed; a group cut short reports the mutants it
checked. Usage: bench/mutation.py [GROUP ...] [--minutes N per group] [--list]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# group -> (files to mutate, tests that guard them). Fast tests only: each mutant runs them.
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "schematic-emitter": (
        ["imagefactory/goyaml.py", "imagefactory/gotext.py"],
        ["tests/test_goyaml.py", "tests/test_schematic.py"],
    ),
    "store": (["imagefactory/store.py"], ["tests/test_store.py"]),
    "sources": (["imagefactory/sources.py"], ["tests/test_sources.py"]),
    "build-keys": (["imagefactory/build.py"], ["tests/test_build_keys.py"]),
    "signing": (
        ["imagefactory/signing/*"],
        [
            "tests/test_signing_cosign.py",
            "tests/test_signing_keys.py",
            "tests/test_signing_keyless.py",
            "tests/test_signing_payload.py",
            "tests/test_signing_policy.py",
            "tests/test_signing_tlog.py",
        ],
    ),
    "oci": (
        ["imagefactory/oci/digest.py", "imagefactory/oci/unpack.py", "imagefactory/oci/model.py"],
        ["tests/test_oci_unpack.py", "tests/test_oci_layout.py", "tests/test_layers.py"],
    ),
}


def _copy_tree(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _config(mutate: list[str], tests: list[str]) -> str:
    present = [t for t in tests if (REPO / t).exists()]

    def listed(key: str, values: list[str]) -> str:
        return f"{key} =\n" + "".join(f"    {value}\n" for value in values)

    return (
        "[mutmut]\n"
        + listed("source_paths", ["imagefactory"])
        + listed("only_mutate", mutate)
        + listed("pytest_add_cli_args_test_selection", present)
        + listed("pytest_add_cli_args", ["-p", "no:cacheprovider"])
    )


def run_group(name: str, minutes: float) -> dict[str, object]:
    mutate, tests = GROUPS[name]
    mutmut = Path(sys.executable).with_name("mutmut")
    with tempfile.TemporaryDirectory(prefix=f"mutation-{name}-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        (work / "setup.cfg").write_text(_config(mutate, tests))
        started = time.monotonic()
        try:
            subprocess.run(
                ["nice", "-n", "19", str(mutmut), "run", "--max-children", "1"],
                cwd=work, timeout=minutes * 60, capture_output=True, check=False,
                # The tests must import the mutated copy, not an editable install of the repo.
                env={**os.environ, "PYTHONPATH": str(work / "mutants")},
            )  # fmt: skip
            finished = True
        except subprocess.TimeoutExpired:
            finished = False
        subprocess.run(
            [str(mutmut), "export-cicd-stats"], cwd=work, capture_output=True, check=False
        )
        stats_file = work / "mutants" / "mutmut-cicd-stats.json"
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        survivors = subprocess.run(
            [str(mutmut), "results"], cwd=work, capture_output=True, text=True, check=False
        ).stdout.splitlines()
    killed = int(stats.get("killed", 0)) + int(stats.get("timeout", 0))
    checked = killed + int(stats.get("survived", 0)) + int(stats.get("suspicious", 0))
    return {
        "group": name,
        "finished": finished,
        "seconds": round(time.monotonic() - started),
        "generated": stats.get("total", 0),
        "checked": checked,
        "killed": killed,
        "kill_rate": round(100 * killed / checked, 1) if checked else None,
        "survivors": [line.strip() for line in survivors if "survived" in line][:50],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("groups", nargs="*", default=list(GROUPS))
    parser.add_argument("--minutes", type=float, default=30.0, help="time box per group")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    args = parser.parse_args()
    if args.list:
        for name, (mutate, tests) in GROUPS.items():
            print(f"{name}: {' '.join(mutate)} <- {' '.join(tests)}")
        return 0
    for name in args.groups:
        result = run_group(name, args.minutes)
        rate = "n/a" if result["kill_rate"] is None else f"{result['kill_rate']}%"
        state = "complete" if result["finished"] else "cut short by the time box"
        print(
            f"{name}: {result['killed']}/{result['checked']} killed ({rate}) of "
            f"{result['generated']} generated, {result['seconds']} s, {state}"
        )
        for line in result["survivors"]:  # type: ignore[union-attr]
            print(f"  survived: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
