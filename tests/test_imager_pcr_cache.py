"""The PCR digest sidecar: `<file>.pcr-digests.json` reused while the file keeps its size and mtime.

Reuse is proven by planting well-formed but wrong digests and by counting hashlib.file_digest calls.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from imagefactory.imager import pcr

BOGUS = {bank: bytes([index + 1]) * hashlib.new(bank).digest_size for index, bank in
         enumerate(pcr.BANK_NAMES)}  # fmt: skip


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every (file name, bank) hashed from disk while the test runs."""
    calls: list[tuple[str, str]] = []
    real: Callable[..., Any] = hashlib.file_digest

    def counting(f: BinaryIO, digest: str) -> Any:
        calls.append((Path(f.name).name, digest))  # type: ignore[arg-type]
        return real(f, digest)

    monkeypatch.setattr(hashlib, "file_digest", counting)
    yield calls


def _file(tmp_path: Path, data: bytes = b"initramfs bytes" * 1000) -> Path:
    path = tmp_path / "initramfs.xz"
    path.write_bytes(data)
    return path


def _plant(path: Path, digests: dict[str, bytes], **override: object) -> None:
    st = path.stat()
    document: dict[str, object] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    document.update({bank: digest.hex() for bank, digest in digests.items()})
    document.update(override)
    pcr.sidecar_path(path).write_text(json.dumps(document))


def test_record_writes_the_real_digests(tmp_path: Path) -> None:
    path = _file(tmp_path)
    recorded = pcr.record_digests(path)
    assert recorded == pcr.digest_bytes(path.read_bytes())
    document = json.loads(pcr.sidecar_path(path).read_bytes())
    st = path.stat()
    assert document == {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        **{bank: digest.hex() for bank, digest in recorded.items()},
    }
    assert pcr.sidecar_path(path).name == "initramfs.xz.pcr-digests.json"


def test_valid_sidecar_is_used_without_hashing(
    tmp_path: Path, hashed: list[tuple[str, str]]
) -> None:
    path = _file(tmp_path)
    pcr.record_digests(path)
    assert len(hashed) == 3
    hashed.clear()
    other = tmp_path / "kernel"
    other.write_bytes(b"kernel")
    digests = pcr.digest_files([path, other])
    assert sorted(hashed) == [("kernel", bank) for bank in pcr.BANK_NAMES]
    assert digests[path] == pcr.digest_bytes(path.read_bytes())
    assert not pcr.sidecar_path(other).exists(), "files without a sidecar are left alone"


def test_planted_digests_are_trusted_while_size_and_mtime_match(tmp_path: Path) -> None:
    path = _file(tmp_path)
    _plant(path, BOGUS)
    assert pcr.digest_files([path]) == {path: BOGUS}


@pytest.mark.parametrize("change", ["mtime", "size"])
def test_stale_sidecar_is_ignored_and_rewritten(
    tmp_path: Path, hashed: list[tuple[str, str]], change: str
) -> None:
    path = _file(tmp_path)
    _plant(path, BOGUS)
    if change == "mtime":
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    else:
        # Same mtime, other size: only the size tells them apart.
        st = path.stat()
        with path.open("ab") as f:
            f.write(b"more")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    real = pcr.digest_bytes(path.read_bytes())
    assert pcr.digest_files([path]) == {path: real}
    assert len(hashed) == 3
    hashed.clear()
    assert pcr.digest_files([path]) == {path: real}, "the rewritten sidecar is valid"
    assert hashed == []


@pytest.mark.parametrize(
    "sidecar",
    [
        b"",
        b"not json",
        b"[]",
        b'"text"',
        b"{}",
    ],
)
def test_malformed_sidecar_is_ignored(tmp_path: Path, sidecar: bytes) -> None:
    path = _file(tmp_path)
    pcr.sidecar_path(path).write_bytes(sidecar)
    assert pcr.digest_files([path]) == {path: pcr.digest_bytes(path.read_bytes())}


@pytest.mark.parametrize(
    "override",
    [
        {"sha384": None},
        {"sha512": "zz" * 64},
        {"sha256": "00" * 31},
        {"sha256": 7},
        {"size": "15000"},
        {"mtime_ns": None},
    ],
)
def test_sidecar_with_bad_fields_is_ignored(tmp_path: Path, override: dict[str, object]) -> None:
    path = _file(tmp_path)
    _plant(path, BOGUS, **override)
    assert pcr.digest_files([path]) == {path: pcr.digest_bytes(path.read_bytes())}


def test_missing_bank_is_ignored(tmp_path: Path) -> None:
    path = _file(tmp_path)
    _plant(path, {bank: BOGUS[bank] for bank in ("sha256", "sha384")})
    assert pcr.digest_files([path]) == {path: pcr.digest_bytes(path.read_bytes())}


def test_unwritable_directory_means_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    path = _file(directory)
    _plant(path, BOGUS, size=0)  # stale: digest_files would rewrite it
    directory.chmod(0o555)
    if os.geteuid() == 0:
        # root writes into a 0555 directory anyway: fail the way mkstemp does for anyone else.
        def refuse(target: Path, data: bytes, mode: int = 0o644) -> None:
            raise PermissionError(13, "Permission denied", str(target))

        monkeypatch.setattr(pcr, "write_atomic", refuse)
    try:
        real = pcr.digest_bytes(path.read_bytes())
        assert pcr.record_digests(path) == real
        assert pcr.digest_files([path]) == {path: real}
        assert json.loads(pcr.sidecar_path(path).read_bytes())["size"] == 0, "left as it was"
        assert sorted(os.listdir(directory)) == ["initramfs.xz", "initramfs.xz.pcr-digests.json"]
    finally:
        directory.chmod(0o755)
