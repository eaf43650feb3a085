"""FAT (EFI system partition) images built as plain files: mkfs.vfat --invariant + mtools, no mounts.

Shared by the sd-boot ISO (efiboot.img) and disk images; every timestamp is the epoch.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import InvalidInput
from imagefactory.units import MIB

SECTOR = 512
# FAT32's minimum cluster count plus room for reserved sectors and FATs (upstream uefi.go).
MIN_FAT32_CLUSTERS = 65525 + 2048
MAX_SECTORS_PER_CLUSTER = 8
# The smallest FAT32 that has 65525 clusters of one sector. Smaller "FAT32" images (which upstream's
# formula gives for UKIs under ~20 MiB) are FAT16 by cluster count, and mtools 4.0.32 cannot read them.
MIN_FAT32_SIZE = 34 * MIB


def sectors_per_cluster(size: int) -> int:
    """The largest of 1/2/4/8 that still leaves at least MIN_FAT32_CLUSTERS clusters."""
    if size <= 0:
        raise InvalidInput(f"FAT image size must be positive, not {size}")
    sectors = size // SECTOR
    spc = 1
    while spc * 2 <= MAX_SECTORS_PER_CLUSTER and sectors // (spc * 2) >= MIN_FAT32_CLUSTERS:
        spc *= 2
    return spc


def epoch_env(epoch: int) -> dict[str, str]:
    return {"SOURCE_DATE_EPOCH": str(epoch), "TZ": "UTC"}


def touch_tree(root: Path, epoch: int) -> None:
    """Set every file and directory under `root` (and root) to the epoch, children first."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            os.utime(Path(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def place(src: Path, dst: Path, *, epoch: int) -> None:
    """Put `src` at `dst` in a tree about to be stamped with the epoch: hard-linked or copied.

    A hard link is used only when it is indistinguishable from a stamped copy (mtime already the
    epoch, same mode and owner as a new file here), so a UKI written by build_uki is not copied
    again; mtools and xorriso record the same bytes either way (xorriso writes no link count).
    Stamping the tree then leaves `src` unchanged but for its access time.
    """
    dst.touch(exist_ok=False)
    fresh, source = dst.stat(), src.stat()
    same = (source.st_mode, source.st_uid, source.st_gid) == (
        fresh.st_mode,
        fresh.st_uid,
        fresh.st_gid,
    )
    if same and source.st_mtime_ns == epoch * 1_000_000_000:
        dst.unlink()
        try:
            os.link(src, dst)
        except OSError:
            pass  # another file system, or links not allowed: copy
        else:
            return
    shutil.copyfile(src, dst)


def make_fat(
    image: Path,
    size: int,
    *,
    epoch: int,
    label: str = "EFI",
    spc: int | None = None,
    sector_size: int | None = None,
) -> None:
    """Create an empty FAT32 file system of exactly `size` bytes in the file `image`."""
    if size <= 0 or size % SECTOR:
        raise InvalidInput(f"FAT image size {size} is not a positive multiple of {SECTOR}")
    if not label or len(label) > 11:
        raise InvalidInput(f"FAT label {label!r} must be 1 to 11 characters")
    with image.open("wb") as f:
        f.truncate(size)
    argv: list[str | os.PathLike[str]] = ["mkfs.vfat", "-F", "32", "-n", label, "--invariant"]
    if sector_size is not None:
        argv += ["-S", str(sector_size)]
    if spc is not None:
        argv += ["-s", str(spc)]
    argv.append(image)
    tools.run(argv, env=epoch_env(epoch))


def copy_into(image: Path, tops: Sequence[Path], *, epoch: int) -> None:
    """Copy files/directories (recursively, keeping mtimes) into the FAT root."""
    if not tops:
        return
    # fmt: off
    tools.run([
        "mcopy",
        "-s",  # recursive
        "-p",  # keep attributes
        "-Q",  # stop at the first error
        "-m",  # keep modification times
        "-i", image,
        *tops,
        "::",
    ], env=epoch_env(epoch))
    # fmt: on


def set_read_only(image: Path, fat_path: str, *, epoch: int) -> None:
    tools.run(["mattrib", "-i", image, "+r", f"::/{fat_path}"], env=epoch_env(epoch))


def build_fat(
    image: Path,
    size: int,
    root: Path,
    *,
    epoch: int,
    label: str = "EFI",
    spc: int | None = None,
    read_only: Sequence[str] = (),
) -> None:
    """A FAT image holding the tree under `root` (top-level entries in sorted order)."""
    touch_tree(root, epoch)
    make_fat(image, size, epoch=epoch, label=label, spc=spc)
    copy_into(image, sorted(root.iterdir()), epoch=epoch)
    for path in read_only:
        set_read_only(image, path, epoch=epoch)
