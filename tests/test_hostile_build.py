"""`imagefactory build` against odd paths, a read-only or full store, a poisoned cache and a messy
schematics directory: one plain line and the right exit code, nothing outside --out and the store.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from build_helpers import private_config, write_schematic
from hostile_cli import run_cli

VERSION = "v1.11.5"
KERNEL = "kernel-amd64"


@pytest.fixture(scope="module")
def site(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config, schematic) with the kernel already built once into the site's store."""
    base = tmp_path_factory.mktemp("hostile-build")
    config = private_config(sample_release, base / "site")
    schematic = write_schematic(base)
    outcome = run_cli(*_build(config, schematic, KERNEL, base / "first"), timeout=600)
    assert outcome.code == 0, outcome
    return config, schematic


def _build(config: Path, schematic: Path | str, asset: str, out: Path | str) -> list[str]:
    return [
        "build", "--config", str(config), "--schematic", str(schematic),
        "--version", VERSION, "--asset", asset, "--out", str(out),
    ]  # fmt: skip


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def _mounted(*argv: str, where: Path) -> Iterator[Path]:
    done = subprocess.run(["mount", *argv, str(where)], capture_output=True, check=False)
    if done.returncode != 0:  # mounting needs CAP_SYS_ADMIN (the CI machine runs as root)
        pytest.skip(f"cannot mount here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _out_cases(tmp_path: Path) -> dict[str, tuple[str, int]]:
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "outdir" / KERNEL).mkdir(parents=True)
    return {
        "a file": (str(tmp_path / "file"), 2),
        "a dangling symlink": (str(tmp_path / "dangling"), 2),
        "/dev/null": ("/dev/null", 2),
        "under a file": (str(tmp_path / "file" / "out"), 2),
        "too long": (str(tmp_path / ("x" * 300)), 2),
        "OUT/ASSET a directory": (str(tmp_path / "outdir"), 2),
        "empty": ("", 2),
    }


OUT_CASES = [
    "a file", "a dangling symlink", "/dev/null", "under a file", "too long",
    "OUT/ASSET a directory", "empty",
]  # fmt: skip


@pytest.mark.parametrize("case", OUT_CASES)
def test_bad_out(site: tuple[Path, Path], tmp_path: Path, case: str) -> None:
    config, schematic = site
    out, expected = _out_cases(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    outcome = run_cli(*_build(config, schematic, KERNEL, out), cwd=tmp_path)
    assert outcome.code == expected, outcome
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing new, not even a temp


def test_out_with_dotdot_makes_no_stray_directory(site: tuple[Path, Path], tmp_path: Path) -> None:
    config, schematic = site
    outcome = run_cli(*_build(config, schematic, KERNEL, "x/../dd"), cwd=tmp_path)
    assert outcome.code == 0, outcome
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dd"]
    assert (tmp_path / "dd" / KERNEL).is_file()


@pytest.mark.parametrize(
    ("asset", "version"),
    [("x" * 100_000, VERSION), (KERNEL, "v" + "1" * 5000 + ".0.0"), ("../../etc/passwd", VERSION)],
)
def test_huge_or_odd_arguments(
    site: tuple[Path, Path], tmp_path: Path, asset: str, version: str
) -> None:
    config, schematic = site
    argv = _build(config, schematic, asset, tmp_path / "out")
    argv[argv.index("--version") + 1] = version
    outcome = run_cli(*argv)
    assert outcome.code == 2, outcome
    assert len(outcome.stderr) < 1200
    assert not (tmp_path / "out").exists()


def test_read_only_out(site: tuple[Path, Path], tmp_path: Path) -> None:
    config, schematic = site
    out = tmp_path / "ro"
    out.mkdir()
    with _mounted("-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", where=out):
        outcome = run_cli(*_build(config, schematic, KERNEL, out))
    assert outcome.code in (1, 2), outcome
    assert str(out) in outcome.stderr and "Read-only file system" in outcome.stderr


def test_read_only_store_serves_what_it_holds(site: tuple[Path, Path], tmp_path: Path) -> None:
    config, schematic = site
    store = config.parent / "store"
    with _mounted("--bind", "-o", "ro", str(store), where=store):
        assert run_cli(*_build(config, schematic, KERNEL, tmp_path / "a")).code == 0
        missing = run_cli(*_build(config, schematic, "cmdline-metal-arm64", tmp_path / "b"))
    assert (tmp_path / "a" / KERNEL).is_file()
    assert missing.code == 1, missing
    assert "Read-only file system" in missing.stderr
    assert not (tmp_path / "b").exists()


def test_full_store_disk(sample_release: Path, tmp_path: Path) -> None:
    config = private_config(sample_release, tmp_path / "site")
    store = tmp_path / "site" / "store"
    store.mkdir()
    schematic = write_schematic(tmp_path)
    with _mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs", where=store):
        outcome = run_cli(*_build(config, schematic, "metal-amd64.iso", tmp_path / "out"))
        leftovers = (
            [p.name for p in (store / "builds").glob(".*")] if (store / "builds").exists() else []
        )
    assert outcome.code == 1, outcome
    assert "No space left on device" in outcome.stderr
    assert not (tmp_path / "out").exists()
    assert leftovers == []


def _store_output(config: Path, name: str) -> Path:
    found = list((config.parent / "store" / "builds").glob(f"*/{name}"))
    assert len(found) == 1, found
    return found[0]


def test_truncated_cache_entry_is_rebuilt(site: tuple[Path, Path], tmp_path: Path) -> None:
    config, schematic = site
    assert run_cli(*_build(config, schematic, KERNEL, tmp_path / "a")).code == 0
    good = _digest(tmp_path / "a" / KERNEL)
    stored = _store_output(config, KERNEL)
    with stored.open("r+b") as handle:
        handle.truncate(100)
    assert run_cli(*_build(config, schematic, KERNEL, tmp_path / "b")).code == 0
    assert _digest(tmp_path / "b" / KERNEL) == good
    assert _digest(stored) == good


def test_same_size_corruption_is_caught_by_digest(site: tuple[Path, Path], tmp_path: Path) -> None:
    config, schematic = site
    assert run_cli(*_build(config, schematic, KERNEL, tmp_path / "a")).code == 0
    good = _digest(tmp_path / "a" / KERNEL)
    stored = _store_output(config, KERNEL)
    info = stored.stat()
    with stored.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0" * 16 if handle.read(16) != b"\0" * 16 else b"\1" * 16)
    os.utime(stored, ns=(info.st_atime_ns, info.st_mtime_ns))  # size and mtime as before
    assert run_cli(*_build(config, schematic, KERNEL, tmp_path / "b")).code == 0
    assert _digest(tmp_path / "b" / KERNEL) == good


def test_schematics_directory_with_bad_files(site: tuple[Path, Path], tmp_path: Path) -> None:
    """A malformed, a huge and a FIFO file beside a good one: the good one builds by ID."""
    config, schematic = site
    directory = config.parent / "schematics"
    directory.mkdir(exist_ok=True)
    (directory / "good.yaml").write_bytes(schematic.read_bytes())
    (directory / "bad.yaml").write_text("customization: [\n")
    (directory / "huge.yaml").write_bytes(
        b"customization:\n  extraKernelArgs:\n    - &a "
        + b"a" * 100_000
        + b"\n"
        + b"    - *a\n" * 10_000
    )
    os.mkfifo(directory / "fifo.yaml")
    schematic_id = run_cli("schematic", "id", schematic).stdout.decode().strip()
    outcome = run_cli(*_build(config, schematic_id, KERNEL, tmp_path / "a"), timeout=60)
    assert outcome.code == 0, outcome
    assert "bad.yaml: yaml: line 2" in outcome.stderr
    assert "fifo.yaml: not a regular file; cannot read schematic" in outcome.stderr
    assert "huge.yaml" in outcome.stderr
    missing = run_cli(*_build(config, "0" * 64, KERNEL, tmp_path / "b"))
    assert missing.code == 2
    assert f'schematic ID "{"0" * 64}" not found' in missing.stderr
