"""Deterministic trees and archives of the sample: entries, cpio, xz/zstd, squashfs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from imagefactory.errors import BuildError
from imagefactory.quirks import Compression
from imagefactory.sample import tree

EPOCH = 1700000000
ENTRIES = [
    tree.file("b/z.txt", "z\n"),
    tree.file("a.bin", b"\x00\x01", 0o600),
    tree.file("B/upper", "u\n", 0o755),
    tree.symlink("b/link", "z.txt"),
    tree.directory("empty"),
]


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "a//b", "a/"])
def test_bad_entry_paths(path: str) -> None:
    with pytest.raises(BuildError, match="bad tree entry path"):
        tree.file(path, "x")


def test_entry_must_be_one_kind() -> None:
    with pytest.raises(BuildError, match="exactly one kind"):
        tree.Entry("a", data=b"x", link="y")
    with pytest.raises(BuildError, match="exactly one kind"):
        tree.Entry("a")


def test_materialize_fixes_modes_and_times(tmp_path: Path) -> None:
    root = tree.materialize(ENTRIES, tmp_path / "t", EPOCH)
    assert (root / "a.bin").stat().st_mode & 0o777 == 0o600
    assert (root / "B/upper").stat().st_mode & 0o777 == 0o755
    assert (root / "b").stat().st_mode & 0o777 == 0o755
    assert (root / "b/link").readlink() == Path("z.txt")
    for path in [root, *root.rglob("*")]:
        assert os.lstat(path).st_mtime == EPOCH, path


def test_sorted_paths_is_byte_order_parents_first(tmp_path: Path) -> None:
    root = tree.materialize(ENTRIES, tmp_path / "t", EPOCH)
    names = [str(p.relative_to(root)) for p in tree.sorted_paths(root)]
    assert names == ["B", "B/upper", "a.bin", "b", "b/link", "b/z.txt", "empty"]


def test_cpio_is_reproducible_and_root_owned(tmp_path: Path) -> None:
    one = tree.cpio_newc(tree.materialize(ENTRIES, tmp_path / "1", EPOCH), tmp_path / "1.cpio")
    two = tree.cpio_newc(tree.materialize(ENTRIES, tmp_path / "2", EPOCH), tmp_path / "2.cpio")
    assert one.read_bytes() == two.read_bytes()
    assert one.read_bytes()[:6] == b"070701"  # newc
    listing = subprocess.run(
        ["cpio", "-tv", "--quiet"], stdin=one.open("rb"), capture_output=True, check=True
    ).stdout.decode()
    names = [
        line.split()[-1] if " -> " not in line else line.split()[-3]
        for line in listing.splitlines()
    ]
    assert names == [".", "B", "B/upper", "a.bin", "b", "b/link", "b/z.txt", "empty"]
    assert all(" root     root " in line for line in listing.splitlines())


@pytest.mark.parametrize(
    ("compression", "magic"),
    [(Compression.XZ, b"\xfd7zXZ\x00"), (Compression.ZSTD, b"\x28\xb5\x2f\xfd")],
)
def test_compress_is_reproducible(tmp_path: Path, compression: Compression, magic: bytes) -> None:
    source = tmp_path / "data"
    source.write_bytes(b"sample " * 5000)
    one = tree.compress(source, tmp_path / "one", compression).read_bytes()
    two = tree.compress(source, tmp_path / "two", compression).read_bytes()
    assert one == two
    assert one.startswith(magic)
    if compression is Compression.XZ:
        # The kernel's xz decoder accepts CRC32 or no check, never the default CRC64.
        out = subprocess.run(
            ["xz", "--robot", "--list", str(tmp_path / "one")], capture_output=True, check=True
        ).stdout.decode()
        assert "\tCRC32\t" in out


@pytest.mark.parametrize(
    "compressor",
    [("-comp", "xz", "-Xdict-size", "100%"), ("-comp", "zstd", "-Xcompression-level", "18")],
)
def test_mksquashfs_is_reproducible(tmp_path: Path, compressor: tuple[str, ...]) -> None:
    images = []
    for name in ("1", "2"):
        root = tree.materialize(ENTRIES, tmp_path / name, EPOCH)
        images.append(tree.mksquashfs(root, tmp_path / f"{name}.sqsh", compressor, EPOCH))
    assert images[0].read_bytes() == images[1].read_bytes()
    listing = subprocess.run(
        ["unsquashfs", "-lln", "-d", "", str(images[0])], capture_output=True, check=True
    ).stdout.decode()
    assert "0/0" in listing and "/b/link -> z.txt" in listing


def test_cpio_sets_every_entry_to_the_given_time(tmp_path: Path) -> None:
    root = tree.materialize(ENTRIES, tmp_path / "t", EPOCH)
    os.utime(root / "b/z.txt", (5, 5))
    fixed = tree.cpio_newc(root, tmp_path / "fixed.cpio", EPOCH).read_bytes()
    assert os.lstat(root / "b/z.txt").st_mtime == EPOCH
    # Without a time, the root's (which materialize set) is every entry's.
    other = tree.materialize(ENTRIES, tmp_path / "o", EPOCH + 99)
    os.utime(other / "b/z.txt", (5, 5))
    assert tree.cpio_newc(other, tmp_path / "root.cpio").read_bytes() != fixed
    assert os.lstat(other / "b/z.txt").st_mtime == EPOCH + 99
    assert tree.cpio_newc(other, tmp_path / "other.cpio", EPOCH).read_bytes() == fixed


def test_mksquashfs_with_source_date_epoch_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compressor = ("-comp", "xz", "-Xdict-size", "100%")
    root = tree.materialize(ENTRIES, tmp_path / "t", EPOCH)
    plain = tree.mksquashfs(root, tmp_path / "plain.sqsh", compressor, EPOCH).read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH + 1000))
    assert tree.mksquashfs(root, tmp_path / "env.sqsh", compressor, EPOCH).read_bytes() == plain
