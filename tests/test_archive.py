"""The one archive module: exact argv, and the same bytes whatever the machine's cores or environment.

Real cpio, xz, zstd, mksquashfs and unsquashfs read the outputs back.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory import archive, tools
from imagefactory.errors import BuildError
from imagefactory.quirks import Compression

EPOCH = 1_700_000_000
ZSTD_ARGS = ("-comp", "zstd", "-Xcompression-level", "18")


def sample_data(size: int) -> bytes:
    """Compressible but not trivial: words from a seeded generator."""
    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefghij", k=rng.randint(2, 9))) for _ in range(2000)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=12)) + b"\n"
    return bytes(out[:size])


@contextmanager
def one_cpu() -> Iterator[None]:
    """Run the block (and the tools it starts) as if the machine had a single core."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def compressed(source: Path, compression: Compression, preset: archive.XzPreset) -> bytes:
    with (source.parent / "out").open("w+b") as out:
        archive.compress(source, out, compression, xz_preset=preset)
        out.seek(0)
        return out.read()


def cpio_bytes(root: Path, names: Sequence[str]) -> bytes:
    with (root.parent / f"{root.name}.cpio").open("w+b") as out:
        archive.cpio_newc(root, names, out, mtime=EPOCH)
        out.seek(0)
        return out.read()


def tool(*argv: str | Path, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        [str(a) for a in argv], input=stdin, capture_output=True, check=True
    ).stdout


def newc_headers(data: bytes) -> list[tuple[int, int, int, str]]:
    """(uid, gid, mtime, name) of each newc entry before the trailer."""
    found: list[tuple[int, int, int, str]] = []
    pos = 0
    while True:
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        name_start = pos + 110
        name = data[name_start : name_start + fields[11] - 1].decode()
        if name == "TRAILER!!!":
            return found
        found.append((fields[2], fields[3], fields[5], name))
        data_start = (name_start + fields[11] + 3) & ~3
        pos = (data_start + fields[6] + 3) & ~3


# --- argv -----------------------------------------------------------------------------------------


def test_compress_argv_is_fixed(tmp_path: Path) -> None:
    source = tmp_path / "s"
    source.write_bytes(b"x")
    with (tmp_path / "sink").open("wb") as sink, tools.recording() as ran:
        archive.compress(source, sink, Compression.XZ)
        archive.compress(source, sink, Compression.XZ, xz_preset=archive.XzPreset.EXTENSIONS)
        archive.compress(source, sink, Compression.ZSTD)
    assert ran.argvs == [
        ["xz", "--compress", "--check=crc32", "-9", "--threads=1", "--stdout", "--quiet"],
        ["xz", "--compress", "--check=crc32", "-0e", "--threads=1", "--stdout", "--quiet"],
        ["zstd", "-18", "--threads=0", "--stdout", "--no-progress", "--quiet"],
    ]


def test_squashfs_and_cpio_argv(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").write_text("a")
    image = tmp_path / "o.sqsh"
    with (tmp_path / "o.cpio").open("wb") as sink, tools.recording() as ran:
        archive.squashfs(root, image, ZSTD_ARGS, mtime=5)
        archive.squashfs(root, image, ZSTD_ARGS, mtime=5, exclude=("x", "y"))
        archive.cpio_newc(root, ["a"], sink, mtime=5)
    base = [
        "env", "-u", "SOURCE_DATE_EPOCH",
        "mksquashfs", str(root), str(image),
        "-noappend", "-no-progress", "-quiet", "-all-root", "-no-xattrs",
        "-mkfs-time", "5", "-all-time", "5",
        *ZSTD_ARGS,
    ]  # fmt: skip
    assert ran.argvs == [
        base,
        [*base, "-e", "x", "y"],
        ["cpio", "--create", "--format=newc", "--reproducible", "--owner=+0:+0", "--quiet"],
    ]


# --- compression: same bytes on any machine ---------------------------------------------------------


@pytest.mark.parametrize(
    ("compression", "preset"),
    [
        (Compression.XZ, archive.XzPreset.INITRAMFS),
        (Compression.XZ, archive.XzPreset.EXTENSIONS),
        (Compression.ZSTD, archive.XzPreset.INITRAMFS),
    ],
)
def test_compress_is_the_same_on_one_core(
    tmp_path: Path, compression: Compression, preset: archive.XzPreset
) -> None:
    source = tmp_path / "data"
    source.write_bytes(sample_data(3 << 20))
    everywhere = compressed(source, compression, preset)
    with one_cpu():
        alone = compressed(source, compression, preset)
    assert alone == everywhere
    decompress = "xz" if compression is Compression.XZ else "zstd"
    assert tool(decompress, "-d", "-c", stdin=everywhere) == source.read_bytes()


def test_xz_is_single_threaded_whatever_the_cores(tmp_path: Path) -> None:
    """xz -T0 picks the multi-threaded format by core count and xz version; -T1 never does."""
    data = sample_data(3 << 20)
    source = tmp_path / "data"
    source.write_bytes(data)
    ours = compressed(source, Compression.XZ, archive.XzPreset.EXTENSIONS)
    single = tool("xz", "-C", "crc32", "-0", "-e", "-T1", "-c", stdin=data)
    assert ours == single
    listing = tool("xz", "--robot", "--list", "--verbose", tmp_path / "out").decode()
    assert "\tCRC32\t" in listing
    # One block: the single-threaded encoder doesn't split the stream.
    assert listing.count("\nblock\t") == 1


def test_zstd_output_does_not_depend_on_workers(tmp_path: Path) -> None:
    """Streaming multi-threaded zstd is the same for any worker count (facebook/zstd#2238, #2327)."""
    data = sample_data(3 << 20)
    source = tmp_path / "data"
    source.write_bytes(data)
    ours = compressed(source, Compression.ZSTD, archive.XzPreset.INITRAMFS)
    for workers in ("1", "2", "4"):
        assert tool("zstd", "-18", f"-T{workers}", "-c", "-q", stdin=data) == ours, workers


# --- squashfs -------------------------------------------------------------------------------------


def make_tree(root: Path) -> Path:
    (root / "usr/lib/firmware").mkdir(parents=True)
    (root / "usr/lib/firmware/blob").write_bytes(b"\x00fw")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/link").symlink_to("tool")
    return root


def test_squashfs_ignores_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "root")
    plain = archive.squashfs(root, tmp_path / "plain.sqsh", ZSTD_ARGS, mtime=EPOCH)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "12345")
    with_env = archive.squashfs(root, tmp_path / "env.sqsh", ZSTD_ARGS, mtime=EPOCH)
    assert plain.read_bytes() == with_env.read_bytes()
    assert tool("unsquashfs", "-mkfs-time", with_env).decode().strip() == str(EPOCH)
    listing = tool("unsquashfs", "-lln", "-d", "", with_env).decode()
    assert "0/0" in listing and "/usr/bin/link -> tool" in listing
    assert "1001/" not in listing and "12345" not in listing


def test_squashfs_exclude(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    image = archive.squashfs(
        root, tmp_path / "o.sqsh", ZSTD_ARGS, mtime=EPOCH, exclude=("usr/lib/firmware",)
    )
    paths = tool("unsquashfs", "-l", "-d", "", image).decode().split()
    assert "/usr/bin/tool" in paths
    assert not any(p.startswith("/usr/lib/firmware") for p in paths)


# --- cpio -----------------------------------------------------------------------------------------


def test_cpio_order_owner_and_time(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    os.utime(root / "usr/bin/tool", (1, 1))
    names = ["usr", "usr/bin", "usr/bin/tool", "usr/bin/link"]
    data = cpio_bytes(root, names)
    assert data[:6] == b"070701"
    assert tool("cpio", "-t", "--quiet", stdin=data).decode().split() == names
    assert [header[:3] for header in newc_headers(data)] == [(0, 0, EPOCH)] * len(names)
    # The same names in another tree (other inodes, other times) give the same bytes.
    other = make_tree(tmp_path / "other")
    assert cpio_bytes(other, names) == data


@pytest.mark.parametrize("name", ["", "/etc/passwd", "a\nb"])
def test_cpio_rejects_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(BuildError, match="cpio: bad entry name"):
        archive.cpio_newc(tmp_path, [name], io.BytesIO(), mtime=EPOCH)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.text(
            st.characters(exclude_categories=["Cs"], exclude_characters="/\n\x00"),
            min_size=1,
            max_size=20,
        ).filter(lambda n: n not in (".", "..")),
        min_size=1,
        max_size=6,
        unique=True,
    )
)
def test_cpio_round_trips_any_file_name(names: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "root"
        root.mkdir()
        for i, name in enumerate(names):
            (root / name).write_bytes(str(i).encode())
        listed = tool("cpio", "-t", "--quiet", stdin=cpio_bytes(root, names))
        assert listed == b"".join(os.fsencode(n) + b"\n" for n in names)
