#!/usr/bin/env python3
"""Mutation testing (mutmut) over the modules where a silent bug costs most; prints kill rates.

Not part of CI (it is slow). Each module group runs in its own copy of the tracked tree (mutmut
writes mutants/ beside the code), niced and time-boxed; a group cut short reports the mutants it
checked. Usage: bench/mutation.py [GROUP ...] [--minutes N per group] [--only GLOB] [--diffs DIR]
[--list]; results and survivors explained: bench/MUTATION.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# mutmut statuses meaning a test noticed the mutant (a timeout is an infinite loop the tests hit).
KILLED = ("killed", "timeout", "segfault", "caught by type check")
# group -> (files to mutate, tests that guard them, mutant-name globs or () for all). Fast tests
# only: each mutant runs the tests that cover its function.
GROUPS: dict[str, tuple[list[str], list[str], tuple[str, ...]]] = {
    "schematic-emitter": (
        ["imagefactory/goyaml.py", "imagefactory/gotext.py", "imagefactory/goresolve.py"],
        [
            "tests/test_goyaml.py",
            "tests/test_goyaml_mutants.py",
            "tests/test_goyaml_full_emitter.py",
            "tests/test_schematic.py",
        ],
        (),
    ),
    # Store (the content-addressed class) is driven by the OCI layout and unpack tests.
    "store": (
        ["imagefactory/store.py"],
        [
            "tests/test_store.py",
            "tests/test_store_mutants.py",
            "tests/test_oci_layout.py",
            "tests/test_oci_unpack.py",
        ],
        (),
    ),
    # The lock checks only: SourceReader pins against a registry and is covered by the (slow)
    # sample-release tests, not here.
    "sources": (
        ["imagefactory/sources.py"],
        ["tests/test_sources.py", "tests/test_sources_lock.py"],
        (
            "imagefactory.sources.x_filter_versions__*",
            "imagefactory.sources.x_lock_source__*",
            "imagefactory.sources.x__absolute_registry__*",
            "imagefactory.sources.x_check_lock_source__*",
            "imagefactory.sources.x_lock_bytes__*",
            "imagefactory.sources.x_write_lock__*",
            "imagefactory.sources.x_read_lock__*",
            "imagefactory.sources.x_lock_differences__*",
        ),
    ),
    # The cache key and the keyed store step only; the builders behind them need the sample release.
    "build-keys": (
        ["imagefactory/build.py"],
        ["tests/test_build_keys.py"],
        ("imagefactory.build.x__key__*", "imagefactory.build.xǁBuildǁcached__*"),
    ),
    "signing": (
        ["imagefactory/signing/*"],
        [
            "tests/test_signing_cosign.py",
            "tests/test_signing_keys.py",
            "tests/test_signing_keyless.py",
            "tests/test_signing_payload.py",
            "tests/test_signing_policy.py",
            "tests/test_signing_tlog.py",
            "tests/test_signing_mutants.py",
        ],
        (),
    ),
    "oci": (
        [
            "imagefactory/oci/digest.py",
            "imagefactory/oci/tarsafe.py",
            "imagefactory/oci/pull.py",
            "imagefactory/oci/model.py",
        ],
        [
            "tests/test_oci_unpack.py",
            "tests/test_oci_layout.py",
            "tests/test_oci_http.py",
            "tests/test_oci_build.py",
            "tests/test_oci_mutants.py",
        ],
        (),
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
        # In-process (`-n 0` over the suite's `-n auto`): mutmut records which tests reach each
        # mutated function in its own process; with xdist workers it sees none.
        + listed("pytest_add_cli_args", ["-p", "no:cacheprovider", "-n", "0"])
    )


def run_group(
    name: str, minutes: float, diffs: Path | None, only: tuple[str, ...] = ()
) -> dict[str, object]:
    mutate, tests, selected = GROUPS[name]
    if only:
        if selected:
            raise SystemExit(f"{name}: --only cannot narrow a group that already selects mutants")
        selected = only
    mutmut = Path(sys.executable).with_name("mutmut")
    with tempfile.TemporaryDirectory(prefix=f"mutation-{name}-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        (work / "setup.cfg").write_text(_config(mutate, tests))
        started = time.monotonic()
        runner: subprocess.Popen[bytes] | None = None
        try:
            # No PYTHONPATH of our own: mutmut puts mutants/ first on sys.path itself. Pointing
            # PYTHONPATH at mutants/ before mutmut creates it made Python cache "no finder" for that
            # path, so the tests imported the unmutated editable install, no trampoline was hit and
            # every mutant came out "no tests".
            # Own session, so the time box ends mutmut's forked test runners too. Hypothesis
            # properties run the small fixed "mutation" profile (tests/conftest.py): once per
            # mutant, the suite's own example counts would not fit the emitter's 1285 mutants.
            env = os.environ | {"IMAGEFACTORY_HYPOTHESIS_PROFILE": "mutation"}
            runner = subprocess.Popen(
                ["nice", "-n", "19", str(mutmut), "run", "--max-children", "1", *selected],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )  # fmt: skip
            try:
                runner.wait(timeout=minutes * 60)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
        finally:
            if runner is not None and runner.poll() is None:
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
        listing = subprocess.run(
            [str(mutmut), "results", "--all", "true"],
            cwd=work, capture_output=True, text=True, check=False,
        ).stdout.splitlines()  # fmt: skip
        modules, survivors = _tally(listing, selected)
        if diffs is not None:
            shown = [_show(mutmut, work, line.rpartition(": ")[0]) for line in survivors]
            (diffs / f"{name}.diff").write_text("\n".join(shown))
    return {
        "group": name,
        "finished": finished,
        "seconds": round(time.monotonic() - started),
        "modules": modules,
        "survivors": survivors,
    }


def _show(mutmut: Path, work: Path, mutant: str) -> str:
    show = [str(mutmut), "show", mutant]
    return subprocess.run(show, cwd=work, capture_output=True, text=True, check=False).stdout


def _tally(
    listing: list[str], selected: tuple[str, ...]
) -> tuple[dict[str, Counter[str]], list[str]]:
    """Statuses per module, and the mutants no test noticed, from `mutmut results --all true`."""
    modules: dict[str, Counter[str]] = {}
    survivors = []
    for line in listing:
        mutant, _, status = line.strip().rpartition(": ")
        if not mutant or (selected and not any(fnmatch(mutant, glob) for glob in selected)):
            continue
        modules.setdefault(mutant.rsplit(".", 1)[0], Counter())[status] += 1
        if status in ("survived", "no tests"):
            survivors.append(f"{mutant}: {status}")
    return modules, survivors


def _summary(module: str, counts: Counter[str]) -> str:
    """Killed (incl. timeouts) over every checked mutant; a mutant no test runs counts as survived."""
    killed = sum(counts[s] for s in KILLED)
    checked = sum(counts.values()) - counts["not checked"] - counts["skipped"]
    rate = f"{100 * killed / checked:.1f}%" if checked else "n/a"
    return (
        f"  {module}: killed {killed}, survived {counts['survived']}, no tests {counts['no tests']}, "
        f"suspicious {counts['suspicious']}, not checked {counts['not checked']}, "
        f"total {sum(counts.values())} -> kill rate {rate}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("groups", nargs="*", default=list(GROUPS))
    parser.add_argument("--minutes", type=float, default=30.0, help="time box per group")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    parser.add_argument("--diffs", type=Path, help="write each group's surviving mutants here")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="mutant-name glob (repeatable), e.g. '*__mutmut_*[37]' for a fifth of every function",
    )
    args = parser.parse_args()
    if args.list:
        for name, (mutate, tests, selected) in GROUPS.items():
            only = f" (only {' '.join(selected)})" if selected else ""
            print(f"{name}: {' '.join(mutate)} <- {' '.join(tests)}{only}")
        return 0
    for name in args.groups:
        result = run_group(name, args.minutes, args.diffs, tuple(args.only))
        state = "complete" if result["finished"] else "cut short by the time box"
        print(f"{name}: {result['seconds']} s, {state}")
        modules: dict[str, Counter[str]] = result["modules"]  # type: ignore[assignment]
        if not modules:
            print("  no mutants listed (mutmut failed before generating any)")
        for module, counts in sorted(modules.items()):
            print(_summary(module, counts))
        for line in result["survivors"]:  # type: ignore[attr-defined]
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
