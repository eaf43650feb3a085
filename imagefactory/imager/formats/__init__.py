"""A raw disk image turned into what a platform downloads: qcow2/vhd/ova, then .zst/.xz/.gz/.tar.gz."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from imagefactory import tools
from imagefactory.imager.disk.sparse import copy_sparse
from imagefactory.imager.formats.compress import compress_file
from imagefactory.imager.formats.convert import build_ova, convert
from imagefactory.platforms import DiskFormat, OutFormat

GCP_MEMBER = "disk.raw"


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy keeping holes (shutil would write every zero of an 8 GiB image)."""
    with dst.open("wb") as f:
        f.truncate(src.stat().st_size)
    fd = os.open(dst, os.O_WRONLY)
    try:
        copy_sparse(src, fd, 0)
    finally:
        os.close(fd)


def finish(
    raw: Path,
    out: Path,
    *,
    disk_format: DiskFormat,
    options: str,
    out_format: OutFormat,
    epoch: int,
) -> None:
    """Write `out` from the raw image: converted to the disk format, then compressed."""
    with tempfile.TemporaryDirectory(prefix="format-", dir=out.parent) as tmp:
        work = Path(tmp)
        if disk_format is DiskFormat.RAW:
            disk = raw
        elif disk_format is DiskFormat.OVA:
            disk = work / "disk.ova"
            build_ova(raw, disk, epoch=epoch)
        else:
            disk = work / f"disk.{disk_format.value}"
            convert(raw, disk, disk_format.qemu_format, options, epoch=epoch)
        if out_format is OutFormat.RAW:
            if disk == raw:
                sparse_copy(raw, out)
            else:
                os.replace(disk, out)
        elif out_format is OutFormat.TAR_GZ:
            member = work / GCP_MEMBER
            os.link(disk, member)
            tar = work / "disk.tar"
            # fmt: off
            tools.run([
                "tar", "-cf", tar, "-C", work,
                "--sparse", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
                f"--mtime=@{epoch}", "--format=gnu",
                GCP_MEMBER,
            ], env={"TZ": "UTC"})
            # fmt: on
            compress_file(tar, out, out_format)
        else:
            compress_file(disk, out, out_format)
