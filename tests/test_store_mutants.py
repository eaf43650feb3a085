"""Store details the mutation run showed unguarded: blob layout, record contents, sweep counts and
what the sweeper must leave alone (symlinks, stray files, dotted lock files, young debris)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from imagefactory import store
from imagefactory.errors import NotFound
from imagefactory.oci.layout import LayoutTarget


def _installed(tmp_path: Path, name: str = "kernel", data: bytes = b"kernel bytes" * 100) -> Path:
    out = tmp_path / "work" / name
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(data)
    final = tmp_path / "builds" / "key" / name
    store.install_output(out, final)
    return final


def _record(final: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((final.parent / f"{final.name}.record").read_text())
    return loaded


def _old(path: Path) -> None:
    old = time.time() - store.UNLOCKED_DEBRIS_SECONDS - 10
    os.utime(path, (old, old), follow_symlinks=False)


def test_blobs_live_under_blobs_sha256_by_hex(tmp_path: Path) -> None:
    blobs = store.Store(tmp_path)
    digest = blobs.add_bytes(b"layer")
    hexdigest = hashlib.sha256(b"layer").hexdigest()
    assert digest == f"sha256:{hexdigest}"
    assert (tmp_path / "blobs" / "sha256" / hexdigest).read_bytes() == b"layer"
    assert blobs.path(digest) == tmp_path / "blobs" / "sha256" / hexdigest and blobs.has(digest)


def test_fetch_of_a_missing_blob_names_the_repository(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "layout")
    with pytest.raises(NotFound, match="siderolabs/imager@sha256:"):
        store.Store(tmp_path / "store").fetch(target, "siderolabs/imager", "sha256:" + "a" * 64)


def test_record_holds_size_digest_and_the_installed_files_stamp(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    info = final.stat()
    assert _record(final) == {
        "size": 1200,
        # One block: the sha256 of its sha256.
        "blocks_sha256": hashlib.sha256(hashlib.sha256(b"kernel bytes" * 100).digest()).hexdigest(),
        "stamp": [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev],
    }


def test_outputs_install_into_an_existing_key_directory(tmp_path: Path) -> None:
    first = _installed(tmp_path, "kernel")
    second = _installed(tmp_path, "initramfs.xz", b"initramfs")
    assert store.verified_output(first) and store.verified_output(second)


def test_unchanged_metadata_is_trusted_without_rehashing(tmp_path: Path) -> None:
    # The digest is checked only when the file's metadata changed: a record with a matching stamp
    # is a hit even though its digest is not the file's (the stamp is what the check relies on).
    final = _installed(tmp_path)
    record = _record(final)
    (final.parent / "kernel.record").write_text(json.dumps({**record, "sha256": "0" * 64}))
    assert store.verified_output(final)


def test_size_is_checked_even_when_the_stamp_matches(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    with final.open("r+b") as handle:
        handle.truncate(100)
    info = final.stat()
    stamp = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]
    (final.parent / "kernel.record").write_text(json.dumps({**_record(final), "stamp": stamp}))
    assert not store.verified_output(final)


def test_record_without_its_output_is_not_verified(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    final.unlink()
    assert not store.verified_output(final)


def test_record_is_bounded_to_4096_bytes(tmp_path: Path) -> None:
    final = _installed(tmp_path)
    text = json.dumps(_record(final))
    record_path = final.parent / "kernel.record"
    record_path.write_text(text + " " * (4096 - len(text)))
    assert store.verified_output(final)
    record_path.write_text(text + " " * (4097 - len(text)))
    assert not store.verified_output(final)


def test_sweep_of_a_missing_directory_removes_nothing(tmp_path: Path) -> None:
    assert store.sweep(tmp_path / "absent") == 0


def test_sweep_counts_every_removal(tmp_path: Path) -> None:
    for name in (".work-a", ".unpack-b"):
        (tmp_path / name).mkdir()
    for name in ("a.lock", "b.lock"):
        (tmp_path / name).write_bytes(b"")
    for name in (".new-a", ".incoming.b.part"):
        (tmp_path / name).write_bytes(b"")
        _old(tmp_path / name)
    assert store.sweep(tmp_path) == 6
    assert list(tmp_path.iterdir()) == []


def test_sweep_leaves_symlinks_stray_files_and_dotted_locks(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "dir").mkdir(parents=True)
    (elsewhere / "file").write_bytes(b"keep")
    builds = tmp_path / "builds"
    builds.mkdir()
    (builds / ".work-link").symlink_to(elsewhere / "dir")  # not a scratch directory of ours
    (builds / "k.lock").symlink_to(elsewhere / "file")
    (builds / ".work-stray").write_bytes(b"not a directory")
    (builds / ".layout.lock").write_bytes(b"")  # dotted: someone else's lock file
    before = sorted(p.name for p in builds.iterdir())
    assert store.sweep(builds) == 0
    assert sorted(p.name for p in builds.iterdir()) == before
    assert (elsewhere / "dir").is_dir() and (elsewhere / "file").read_bytes() == b"keep"


def test_old_debris_symlinks_are_unlinked_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "file").write_bytes(b"keep")
    builds = tmp_path / "builds"
    builds.mkdir()
    (builds / ".new-dir").symlink_to(elsewhere)  # its target is young; the link itself is old
    (builds / ".incoming.dangling").symlink_to(tmp_path / "gone")
    for name in (".new-dir", ".incoming.dangling"):
        _old(builds / name)
    assert store.sweep(builds) == 2
    assert list(builds.iterdir()) == []
    assert (elsewhere / "file").read_bytes() == b"keep"
