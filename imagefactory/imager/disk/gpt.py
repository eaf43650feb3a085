"""GUID partition tables written into a plain file, with GUIDs derived from labels as upstream does.

`guid_from_label` is Go's uuid.NewHash(sha256, uuid.Nil, label, 8); the table follows UEFI 2.x §5.3.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from imagefactory.errors import InvalidInput
from imagefactory.units import MIB

DISK_LABEL = "talos-image-disk"
ENTRY_COUNT = 128
ENTRY_SIZE = 128
ALIGNMENT = MIB
# Partition attribute bit 2: "legacy BIOS bootable".
LEGACY_BIOS_BOOTABLE = 1 << 2

EFI_SYSTEM = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
BIOS_BOOT = uuid.UUID("21686148-6449-6E6F-744E-656564454649")
LINUX_FILESYSTEM = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")


def guid_from_label(label: str) -> uuid.UUID:
    """sha256(16 zero bytes + label), first 16 bytes, version nibble 8, RFC 4122 variant."""
    digest = bytearray(hashlib.sha256(bytes(16) + label.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(digest))


@dataclass(frozen=True)
class Partition:
    label: str
    type_guid: uuid.UUID
    size: int
    attributes: int = 0

    @property
    def guid(self) -> uuid.UUID:
        return guid_from_label(self.label)


@dataclass(frozen=True)
class Placed:
    """A partition with its first sector; `offset` and `end` are in bytes."""

    partition: Partition
    first_lba: int
    sector_size: int

    @property
    def offset(self) -> int:
        return self.first_lba * self.sector_size

    @property
    def last_lba(self) -> int:
        return self.first_lba + self.partition.size // self.sector_size - 1

    @property
    def end(self) -> int:
        return self.offset + self.partition.size


def _entries_sectors(sector_size: int) -> int:
    return ENTRY_COUNT * ENTRY_SIZE // sector_size


def place(
    partitions: Sequence[Partition], disk_size: int, sector_size: int, *, skip_sectors: int = 0
) -> tuple[Placed, ...]:
    """Lay partitions end to end from the first MiB boundary after the table (and any skipped LBAs)."""
    if disk_size % sector_size:
        raise InvalidInput(
            f"disk size {disk_size} is not a multiple of the {sector_size}-byte sector"
        )
    first_usable = 2 + _entries_sectors(sector_size)
    last_usable = disk_size // sector_size - 2 - _entries_sectors(sector_size)
    align = ALIGNMENT // sector_size
    lba = max(first_usable, skip_sectors)
    placed = []
    for part in partitions:
        if part.size <= 0 or part.size % sector_size:
            raise InvalidInput(f"partition {part.label}: size {part.size} is not whole sectors")
        lba = -(-lba // align) * align
        entry = Placed(part, lba, sector_size)
        if entry.last_lba > last_usable:
            raise InvalidInput(f"partition {part.label} does not fit a disk of {disk_size} bytes")
        placed.append(entry)
        lba = entry.last_lba + 1
    return tuple(placed)


def _entry(placed: Placed) -> bytes:
    part = placed.partition
    name = part.label.encode("utf-16-le")
    if len(name) > 72:
        raise InvalidInput(f"partition name {part.label!r} is longer than 36 characters")
    return struct.pack(
        "<16s16sQQQ72s",
        part.type_guid.bytes_le,
        part.guid.bytes_le,
        placed.first_lba,
        placed.last_lba,
        part.attributes,
        name,
    )


def _header(
    *, current: int, backup: int, first: int, last: int, entries_lba: int, entries_crc: int
) -> bytes:
    fields = (
        b"EFI PART",
        0x00010000,
        92,
        0,  # header CRC, filled below
        0,
        current,
        backup,
        first,
        last,
        guid_from_label(DISK_LABEL).bytes_le,
        entries_lba,
        ENTRY_COUNT,
        ENTRY_SIZE,
        entries_crc,
    )
    layout = "<8sIIIIQQQQ16sQIII"
    header = struct.pack(layout, *fields)
    crc = zlib.crc32(header)
    return struct.pack(layout, *fields[:3], crc, *fields[4:])


def protective_mbr(disk_size: int, sector_size: int) -> bytes:
    """Sector 0: one 0xEE partition covering the disk (boot code left zero for GRUB to fill)."""
    sectors = min(disk_size // sector_size - 1, 0xFFFFFFFF)
    mbr = bytearray(512)
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, sectors)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def write_gpt(f: BinaryIO, placed: Sequence[Placed], disk_size: int, sector_size: int) -> None:
    """Write the protective MBR, the primary table and the backup table into `f`."""
    table = bytearray(ENTRY_COUNT * ENTRY_SIZE)
    for index, entry in enumerate(placed):
        table[index * ENTRY_SIZE : (index + 1) * ENTRY_SIZE] = _entry(entry)
    entries_crc = zlib.crc32(table)
    last_lba = disk_size // sector_size - 1
    n = _entries_sectors(sector_size)
    bounds = {"first": 2 + n, "last": last_lba - 1 - n, "entries_crc": entries_crc}
    primary = _header(current=1, backup=last_lba, entries_lba=2, **bounds)
    backup = _header(current=last_lba, backup=1, entries_lba=last_lba - n, **bounds)
    f.seek(0)
    f.write(protective_mbr(disk_size, sector_size))
    f.seek(sector_size)
    f.write(primary.ljust(sector_size, b"\0"))
    f.write(table)
    f.seek((last_lba - n) * sector_size)
    f.write(table)
    f.write(backup.ljust(sector_size, b"\0"))
