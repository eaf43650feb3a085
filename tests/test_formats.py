"""Hole-aware compression: the standard tools decompress it to the identical file, holes unread.

Files mix holes, zeros written as data, compressible text and random (incompressible) bytes; one
size is not a multiple of the chunk size. Conversions: qemu-img check, the VHD footer, the ova.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.imager.formats import finish
from imagefactory.imager.formats.codecs import CODECS
from imagefactory.imager.formats.compress import CHUNK, Kind, compress_file, pieces
from imagefactory.platforms import DiskFormat, OutFormat

MIB = 1024 * 1024
DECOMPRESS = {
    OutFormat.ZSTD: ["zstd", "-d", "-c", "-q"],
    OutFormat.XZ: ["xz", "-d", "-c"],
    OutFormat.GZ: ["gzip", "-d", "-c"],
}
PLAIN = {
    OutFormat.ZSTD: ["zstd", "-18", "-T0", "-q", "-c"],
    OutFormat.XZ: ["xz", "-0", "-T0", "-c"],
    OutFormat.GZ: ["gzip", "-6", "-n", "-c"],
}


def sparse_file(path: Path, size: int, writes: list[tuple[int, bytes]]) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    return path


def mixed(path: Path, size: int = 64 * MIB + 12345) -> Path:
    """Data runs up to 41 MiB, then a hole and 7 bytes at the very end."""
    assert size >= 41 * MIB + 7
    text = b"".join(b"talos line %d of the sample disk\n" % i for i in range(60000))
    return sparse_file(
        path,
        size,
        [
            (0, b"\x55" * 512),
            (3 * MIB + 17, os.urandom(5 * MIB)),
            (10 * MIB, text),
            (20 * MIB, bytes(2 * MIB)),  # zeros written as data
            (40 * MIB - 100, os.urandom(CHUNK + 300)),
            (size - 7, b"THE END"),
        ],
    )


def run(argv: list[str], src: Path) -> bytes:
    with src.open("rb") as f:
        return subprocess.run(argv, stdin=f, capture_output=True, check=True).stdout


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("out_format", [OutFormat.ZSTD, OutFormat.XZ, OutFormat.GZ])
def test_standard_tools_decompress_to_the_identical_file(
    tmp_path: Path, out_format: OutFormat
) -> None:
    raw = mixed(tmp_path / "disk.raw")
    out = tmp_path / f"disk.raw.{out_format.value}"
    compress_file(raw, out, out_format)
    assert hashlib.sha256(run(DECOMPRESS[out_format], out)).hexdigest() == digest(raw)
    plain = len(run(PLAIN[out_format], raw))
    assert out.stat().st_size <= plain * 1.02, (out.stat().st_size, plain)


@pytest.mark.parametrize("out_format", [OutFormat.ZSTD, OutFormat.XZ, OutFormat.GZ])
def test_tool_integrity_checks_pass(tmp_path: Path, out_format: OutFormat) -> None:
    raw = mixed(tmp_path / "disk.raw", size=41 * MIB + 9)
    out = tmp_path / "out"
    compress_file(raw, out, out_format)
    test = {
        OutFormat.ZSTD: ["zstd", "-t", "-q"],
        OutFormat.XZ: ["xz", "-t"],
        OutFormat.GZ: ["gzip", "-t"],
    }
    subprocess.run([*test[out_format], str(out)], check=True, capture_output=True)


def test_holes_and_random_data_are_classified(tmp_path: Path) -> None:
    raw = mixed(tmp_path / "disk.raw")
    fd = os.open(raw, os.O_RDONLY)
    try:
        found = list(pieces(fd, raw.stat().st_size))
    finally:
        os.close(fd)
    covered = sum(length for _, _, length in found)
    assert covered == raw.stat().st_size
    offsets = [offset for _, offset, _ in found]
    assert offsets == sorted(offsets)
    kinds = {kind for kind, _, _ in found}
    assert kinds == {Kind.ZEROS, Kind.STORE, Kind.COMPRESS}
    # The 5 MiB of random bytes are stored, never handed to the tool.
    stored = sum(length for kind, _, length in found if kind is Kind.STORE)
    assert stored >= 4 * MIB


@pytest.mark.parametrize("out_format", [OutFormat.ZSTD, OutFormat.XZ, OutFormat.GZ])
@given(data=st.binary(max_size=200_000), zeros=st.integers(min_value=0, max_value=3_000_000))
def test_codec_pieces_decompress(out_format: OutFormat, data: bytes, zeros: int) -> None:
    codec = CODECS[out_format]
    stream = codec.stored(data) + codec.zeros(zeros) + codec.stored(data)
    expected = data + bytes(zeros) + data
    if not stream:
        assert not expected
        return
    result = subprocess.run(DECOMPRESS[out_format], input=stream, capture_output=True, check=True)
    assert result.stdout == expected


def test_empty_file(tmp_path: Path) -> None:
    raw = sparse_file(tmp_path / "empty", 0, [])
    for out_format, argv in DECOMPRESS.items():
        out = tmp_path / f"empty.{out_format.value}"
        compress_file(raw, out, out_format)
        assert run(argv, out) == b""


def test_gcp_tar_gz_holds_a_sparse_disk_raw(tmp_path: Path) -> None:
    raw = mixed(tmp_path / "in.raw", size=48 * MIB + 5)
    out = tmp_path / "gcp.raw.tar.gz"
    finish(
        raw,
        out,
        disk_format=DiskFormat.RAW,
        options="",
        out_format=OutFormat.TAR_GZ,
        epoch=1700000000,
    )
    listing = subprocess.run(
        ["tar", "-tvzf", str(out)], capture_output=True, check=True, text=True
    ).stdout
    assert listing.split()[-1] == "disk.raw" and " 0/0 " in listing
    subprocess.run(["tar", "-xzf", str(out), "-C", str(tmp_path)], check=True)
    assert digest(tmp_path / "disk.raw") == digest(raw)


@pytest.mark.parametrize(
    ("disk_format", "options", "qemu_format"),
    [
        (DiskFormat.QCOW2, "cluster_size=8k", "qcow2"),
        (DiskFormat.VHD, "subformat=fixed,force_size", "vpc"),
    ],
)
def test_conversions_check_and_read_back(
    tmp_path: Path, disk_format: DiskFormat, options: str, qemu_format: str
) -> None:
    raw = mixed(tmp_path / "in.raw", size=48 * MIB)
    outs = []
    for n in (1, 2):
        out = tmp_path / f"{n}.{disk_format.value}"
        finish(
            raw,
            out,
            disk_format=disk_format,
            options=options,
            out_format=OutFormat.RAW,
            epoch=1700000000,
        )
        outs.append(out)
    assert digest(outs[0]) == digest(outs[1])  # the VHD footer's time and UUID are fixed
    if disk_format is DiskFormat.QCOW2:
        subprocess.run(["qemu-img", "check", str(outs[0])], check=True, capture_output=True)
        info = subprocess.run(
            ["qemu-img", "info", str(outs[0])], check=True, capture_output=True, text=True
        ).stdout
        assert "cluster_size: 8192" in info
    back = tmp_path / "back.raw"
    subprocess.run(
        ["qemu-img", "convert", "-f", qemu_format, "-O", "raw", str(outs[0]), str(back)], check=True
    )
    assert digest(back) == digest(raw)


def test_ova_order_manifest_and_vmdk(tmp_path: Path) -> None:
    raw = mixed(tmp_path / "in.raw", size=48 * MIB)
    out = tmp_path / "vmware-amd64.ova"
    finish(
        raw, out, disk_format=DiskFormat.OVA, options="", out_format=OutFormat.RAW, epoch=1700000000
    )
    again = tmp_path / "again.ova"
    finish(
        raw,
        again,
        disk_format=DiskFormat.OVA,
        options="",
        out_format=OutFormat.RAW,
        epoch=1700000000,
    )
    assert digest(out) == digest(again)
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["disk.ovf", "disk.mf", "disk.vmdk"]
        tar.extractall(tmp_path / "x", filter="data")
    x = tmp_path / "x"
    for line in (x / "disk.mf").read_text().splitlines():
        name, _, want = line.partition("= ")
        assert digest(x / name.removeprefix("SHA256(").removesuffix(")")) == want
    ovf = (x / "disk.ovf").read_text()
    assert f'ovf:size="{(x / "disk.vmdk").stat().st_size}"' in ovf and 'ovf:capacity="48"' in ovf
    subprocess.run(
        ["qemu-img", "check", "-f", "vmdk", str(x / "disk.vmdk")], check=True, capture_output=True
    )
    back = tmp_path / "back.raw"
    subprocess.run(
        ["qemu-img", "convert", "-f", "vmdk", "-O", "raw", str(x / "disk.vmdk"), str(back)],
        check=True,
    )
    assert digest(back) == digest(raw)


@pytest.mark.parametrize("out_format", [OutFormat.ZSTD, OutFormat.XZ, OutFormat.GZ])
def test_output_depends_on_content_not_on_holes(tmp_path: Path, out_format: OutFormat) -> None:
    """The same bytes, once sparse and once with its zeros written out, compress identically."""
    sparse = mixed(tmp_path / "sparse.raw", size=48 * MIB + 3)
    dense = tmp_path / "dense.raw"
    dense.write_bytes(sparse.read_bytes())
    outs = []
    for raw in (sparse, dense):
        out = tmp_path / f"{raw.name}.{out_format.value}"
        compress_file(raw, out, out_format)
        outs.append(digest(out))
    assert outs[0] == outs[1]
