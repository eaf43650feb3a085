"""The store's verified outputs, locks and sweeping of dead builds' debris."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from imagefactory import store
from imagefactory.errors import InvalidInput


def _installed(tmp_path: Path, data: bytes = b"kernel bytes" * 100) -> Path:
    out = tmp_path / "work" / "kernel"
    out.parent.mkdir()
    out.write_bytes(data)
    final = tmp_path / "builds" / "key" / "kernel"
    store.install_output(out, final)
    return final


def test_installed_output_is_verified(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    assert final.read_bytes() == b"kernel bytes" * 100
    record = json.loads((final.parent / "kernel.record").read_text())
    assert record["size"] == 1200
    assert len(record["blocks_sha256"]) == 64
    assert store.verified_output(final)


def test_missing_output_or_record_is_not_verified(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    (final.parent / "kernel.record").unlink()
    assert not store.verified_output(final)
    assert not store.verified_output(tmp_path / "nothing")


def test_truncated_output_fails_the_size_check(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    with final.open("r+b") as handle:
        handle.truncate(100)
    assert not store.verified_output(final)


def test_same_size_rewrite_fails_the_digest_check(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    info = final.stat()
    final.write_bytes(b"X" * info.st_size)
    os.utime(final, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert not store.verified_output(final)


def test_metadata_change_with_same_content_is_accepted_and_learned(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    before = json.loads((final.parent / "kernel.record").read_text())["stamp"]
    os.utime(final, ns=(1, 1))
    assert store.verified_output(final)
    after = json.loads((final.parent / "kernel.record").read_text())["stamp"]
    assert after != before and after[1] == 1


def test_garbage_record_is_not_trusted(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    for text in ("", "[]", '{"size": "1200"}', "{" * 5000):
        (final.parent / "kernel.record").write_text(text)
        assert not store.verified_output(final)


def _hold_lock(path: Path, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    with store.locked(path):
        ready.set()
        time.sleep(60)


def test_lock_file_is_removed_on_release_and_excludes_others(tmp_path: Path) -> None:
    target = tmp_path / "key"
    with store.locked(target):
        lock = tmp_path / "key.lock"
        assert lock.exists()
        fd = os.open(lock, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        assert store.sweep(tmp_path) == 0  # held: never swept
        assert lock.exists()
    assert not (tmp_path / "key.lock").exists()


def test_sweep_removes_dead_scratch_and_locks_only(tmp_path: Path) -> None:
    dead_scratch = tmp_path / ".work-dead"
    (dead_scratch / "sub").mkdir(parents=True)
    (dead_scratch / "sub" / "big").write_bytes(b"x" * 1000)
    (tmp_path / ".unpack-dead").mkdir()
    (tmp_path / "k.lock").write_bytes(b"")
    (tmp_path / "kept").mkdir()
    young = tmp_path / ".new-young"
    young.mkdir()
    with store.scratch(tmp_path, ".work-") as live:  # sweeps the parent first
        (live / "file").write_bytes(b"x")
        assert not dead_scratch.exists() and not (tmp_path / ".unpack-dead").exists()
        assert not (tmp_path / "k.lock").exists()
        assert store.sweep(tmp_path) == 0
        assert live.is_dir()  # a live build's scratch is held, so kept
    assert sorted(p.name for p in tmp_path.iterdir()) == [".new-young", "kept"]
    old = time.time() - store.UNLOCKED_DEBRIS_SECONDS - 10
    os.utime(young, (old, old))
    assert store.sweep(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]


def test_scratch_of_a_killed_process_is_swept(tmp_path: Path) -> None:
    ready = tmp_path / "ready"

    def child() -> None:
        with store.scratch(tmp_path, ".work-") as work:
            (work / "partial").write_bytes(b"x")
            ready.write_text(str(work))
            time.sleep(60)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            child()
        finally:
            os._exit(0)
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    work = Path(ready.read_text())
    assert store.sweep(tmp_path) == 0 and work.is_dir()  # alive: kept
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert store.sweep(tmp_path) == 1
    assert not work.exists()


def test_store_errors_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with (
        pytest.raises(InvalidInput, match="file: File exists"),
        store.locked(tmp_path / "file" / "key"),
    ):
        pass
