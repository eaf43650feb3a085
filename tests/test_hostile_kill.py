"""Fault injection: a build killed with SIGKILL during unpack, during a tool run and during the final
rename leaves no process alive and nothing outside --out and the store; the next build sweeps the
debris and writes byte-identical output.

The kill comes from inside the build process (a wrapper patches one function to SIGKILL itself at
that point), so each point is hit exactly, not by timing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from build_helpers import private_config, write_schematic
from hostile_cli import REPO, run_cli

ASSET = "metal-amd64.iso"
VERSION = "v1.11.5"

# Runs the CLI with one function patched to SIGKILL the process at the chosen point.
WRAPPER = """
import os, signal, sys
point = sys.argv.pop(1)
import imagefactory.tools as tools
real_replace, real_spawn = os.replace, tools._spawn

def replace(src, dst, *args, **kwargs):
    if point == "unpack" and "/trees/" in os.fspath(dst) and ".unpack-" in os.fspath(src):
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "rename" and "/builds/" in os.fspath(dst) and ".work-" in os.fspath(src):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)

def spawn(args, **options):
    proc = real_spawn(args, **options)
    if point == "tool" and os.path.basename(args[0]) in ("grub-mkrescue", "xorriso"):
        import time
        time.sleep(1.0)  # the tool and its children are at work
        os.kill(os.getpid(), signal.SIGKILL)
    return proc

os.replace = replace
tools._spawn = spawn
from imagefactory.cli import main
sys.exit(main())
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _processes_mentioning(text: str) -> list[str]:
    """Live processes whose argv, cwd or environment names `text` (our store or TMPDIR)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if text.encode() in cmdline or text.encode() in environ or text in cwd:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


def _debris(store: Path) -> list[str]:
    names = []
    for sub in ("builds", "trees"):
        names += [p.name for p in (store / sub).glob(".*")] if (store / sub).is_dir() else []
        names += [p.name for p in (store / sub).glob("*.lock")] if (store / sub).is_dir() else []
    return sorted(names)


@pytest.fixture(scope="module")
def reference(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The asset's digest from an undisturbed build in a fresh store."""
    base = tmp_path_factory.mktemp("kill-reference")
    config = private_config(sample_release, base / "site")
    schematic = write_schematic(base)
    argv = ["build", "--config", config, "--schematic", schematic, "--version", VERSION]
    outcome = run_cli(*argv, "--asset", ASSET, "--out", base / "out", timeout=900)
    assert outcome.code == 0, outcome
    return _digest(base / "out" / ASSET)


@pytest.mark.parametrize("point", ["unpack", "tool", "rename"])
def test_sigkill_then_rebuild(
    sample_release: Path, reference: str, tmp_path: Path, point: str
) -> None:
    config = private_config(sample_release, tmp_path / "site")
    store = tmp_path / "site" / "store"
    schematic = write_schematic(tmp_path)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    work = tmp_path / "cwd"
    work.mkdir()
    argv = [
        "build", "--config", str(config), "--schematic", str(schematic),
        "--version", VERSION, "--asset", ASSET, "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)}
    killed = subprocess.run(
        [sys.executable, "-c", WRAPPER, point, *argv],
        cwd=work, env=env, capture_output=True, timeout=900, check=False,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(store)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(store)) == []
    assert _processes_mentioning(str(tmpdir)) == []
    assert list(tmpdir.iterdir()) == []  # nothing in the inherited $TMPDIR
    assert list(work.iterdir()) == []  # nor in the working directory
    assert not (tmp_path / "out").exists()
    if point != "rename":
        assert _debris(store), "the kill left no debris: the sweep below proves nothing"

    outcome = run_cli(*argv, cwd=work, env={"TMPDIR": str(tmpdir)}, timeout=900)
    assert outcome.code == 0, outcome
    assert _digest(tmp_path / "out" / ASSET) == reference
    assert _debris(store) == []
    assert list(tmpdir.iterdir()) == []
