"""The store's block digest: the same as hashing every block, whatever is a hole or written zeros."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.blockhash import BLOCK, block_digest

# Not a multiple of the file system block, so blocks straddle the edges of holes.
SMALL = 6144


def reference(data: bytes, block: int) -> str:
    """The definition, computed naively over every byte."""
    outer = hashlib.sha256()
    for start in range(0, len(data), block):
        outer.update(hashlib.sha256(data[start : start + block]).digest())
    return outer.hexdigest()


def write_sparse(path: Path, size: int, runs: list[tuple[int, bytes]]) -> bytes:
    """A file of `size` bytes with `runs` written at their offsets and holes elsewhere."""
    content = bytearray(size)
    with path.open("wb") as f:
        f.truncate(size)
        for offset, run in runs:
            data = run[: max(0, size - offset)]
            f.seek(offset)
            f.write(data)
            content[offset : offset + len(data)] = data
    return bytes(content)


runs = st.lists(
    st.tuples(
        st.integers(0, 12 * SMALL),
        st.one_of(
            st.binary(min_size=1, max_size=3 * SMALL), st.builds(bytes, st.integers(1, 3 * SMALL))
        ),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 13 * SMALL), runs=runs)
def test_matches_hashing_every_block(
    tmp_path_factory: pytest.TempPathFactory, size: int, runs: list[tuple[int, bytes]]
) -> None:
    path = tmp_path_factory.mktemp("bh") / "f"
    content = write_sparse(path, size, runs)
    assert block_digest(path, SMALL) == reference(content, SMALL)


def test_holes_and_written_zeros_give_one_digest(tmp_path: Path) -> None:
    size = 3 * BLOCK + 123
    data = os.urandom(5000)
    sparse = tmp_path / "sparse"
    write_sparse(sparse, size, [(BLOCK + 17, data)])
    dense = tmp_path / "dense"
    content = bytearray(size)
    content[BLOCK + 17 : BLOCK + 17 + len(data)] = data
    dense.write_bytes(bytes(content))
    assert os.stat(sparse).st_blocks < os.stat(dense).st_blocks
    assert block_digest(sparse) == block_digest(dense) == reference(bytes(content), BLOCK)


def test_one_changed_byte_in_a_hole_changes_the_digest(tmp_path: Path) -> None:
    path = tmp_path / "disk"
    write_sparse(path, 8 * BLOCK, [(0, b"header")])
    before = block_digest(path)
    with path.open("r+b") as f:
        f.seek(5 * BLOCK + 99)
        f.write(b"\x01")
    assert block_digest(path) != before


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert block_digest(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
