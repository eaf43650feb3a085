"""Each partition's file system built as its own file: vfat (mkfs.vfat + mtools) and xfs (protofile).

Debian 12's xfsprogs (6.1) cannot read the `lts_6.6`+ mkfs configs upstream passes with `-c options=`
and has no SOURCE_DATE_EPOCH: the configs' options are given by hand (`XFS_OPTIONS`) and mkfs.xfs runs
under faketime with the clock frozen at the epoch, so inode times (and so the bytes) are reproducible.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import InvalidInput
from imagefactory.imager import esp
from imagefactory.imager.disk.gpt import guid_from_label

# What each upstream lts config sets, as Debian 12's mkfs.xfs spells it. Options 6.1 lacks are
# left at 6.1's default: metadir=0, exchange=0, parent=0 everywhere, so lts_6.18's exchange=1 and
# parent=1 are the two differences from upstream's BOOT file system.
_LTS_6_1 = (
    "-m",
    "bigtime=1,crc=1,finobt=1,inobtcount=1,reflink=1,rmapbt=0",
    "-i",
    "sparse=1,nrext64=0",
)
_LTS_6_6 = (
    "-m",
    "bigtime=1,crc=1,finobt=1,inobtcount=1,reflink=1,rmapbt=1",
    "-i",
    "sparse=1,nrext64=1",
)
XFS_OPTIONS: dict[str, tuple[str, ...]] = {
    "lts_6.1.conf": _LTS_6_1,
    "lts_6.6.conf": _LTS_6_6,
    "lts_6.12.conf": _LTS_6_6,
    "lts_6.18.conf": _LTS_6_6,
}


def build_vfat(image: Path, size: int, root: Path, *, epoch: int, sector_size: int) -> None:
    """FAT32 labelled EFI with the tree under `root` (upstream: mkfs.vfat --invariant + mcopy)."""
    esp.touch_tree(root, epoch)
    esp.make_fat(image, size, epoch=epoch, label="EFI", sector_size=sector_size)
    esp.copy_into(image, sorted(root.iterdir()), epoch=epoch)


def protofile(root: Path) -> str:
    """mkfs.xfs's classic protofile for the tree, everything owned by 0:0, entries sorted."""
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def walk(directory: Path, depth: int) -> None:
        indent = " " * depth
        for entry in sorted(directory.iterdir(), key=lambda p: p.name):
            name = entry.name
            if any(c.isspace() for c in name) or not name.isprintable():
                raise InvalidInput(f"xfs protofile: file name {name!r} has spaces or controls")
            mode = f"{entry.lstat().st_mode & 0o777:03o}"
            if entry.is_symlink():
                lines.append(f"{indent}{name} l--{mode} 0 0 {os.readlink(entry)}")
            elif entry.is_dir():
                lines.append(f"{indent}{name} d--{mode} 0 0")
                walk(entry, depth + 1)
                lines.append(f"{indent}$")
            elif entry.is_file():
                lines.append(f"{indent}{name} ---{mode} 0 0 {entry.resolve()}")
            else:
                raise InvalidInput(f"xfs protofile: {entry} is not a file, directory or link")

    walk(root, 1)
    lines.append("$")
    return "\n".join(lines) + "\n"


def build_xfs(
    image: Path, size: int, root: Path, *, label: str, lts_config: str, epoch: int, sector_size: int
) -> None:
    options = XFS_OPTIONS.get(lts_config)
    if options is None:
        raise InvalidInput(f"no mkfs.xfs options known for upstream's {lts_config}")
    esp.touch_tree(root, epoch)
    proto = image.with_name(f"{image.name}.proto")
    proto.write_text(protofile(root))
    with image.open("wb") as f:
        f.truncate(size)
    frozen = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    # fmt: off
    tools.run([
        "faketime", "-f", frozen,
        "mkfs.xfs", "-q", "-f",
        "-L", label,
        "-n", "ftype=1",
        *options,
        "-s", f"size={sector_size}",
        "-m", f"uuid={guid_from_label(label)}",
        "-p", proto,
        image,
    ], env=esp.epoch_env(epoch))
    # fmt: on
    proto.unlink()
