"""PE32+ assembly for UKIs: copy the systemd stub and append sections, byte-exact and reproducible.

Follows upstream's native assembler (talos internal/pkg/uki/internal/pe): new 0x80-byte DOS header,
TimeDateStamp = epoch, linker version and checksum 0, sections aligned to the stub's alignments.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagefactory.errors import InvalidInput

DOS_HEADER_SIZE = 0x40
NEW_LFANEW = 0x80
FILE_HEADER_SIZE = 20
SECTION_HEADER_SIZE = 40
PE32_PLUS = 0x20B
SCN_INITIALIZED_DATA = 0x00000040
SCN_MEM_READ = 0x40000000
APPENDED_FLAGS = SCN_INITIALIZED_DATA | SCN_MEM_READ

# Offsets inside the PE32+ optional header.
_OPT_LINKER = 2
_OPT_SIZE_OF_CODE = 4
_OPT_SIZE_OF_INIT_DATA = 8
_OPT_IMAGE_BASE = 24
_OPT_SECTION_ALIGNMENT = 32
_OPT_FILE_ALIGNMENT = 36
_OPT_SIZE_OF_IMAGE = 56
_OPT_SIZE_OF_HEADERS = 60
_OPT_CHECKSUM = 64


@dataclass(frozen=True)
class SectionHeader:
    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_pointer: int
    characteristics: int


@dataclass(frozen=True)
class PeFile:
    """The parts of a PE32+ image the assembler needs."""

    dos_header: bytes
    file_header: bytes
    optional_header: bytes
    sections: tuple[SectionHeader, ...]

    @property
    def section_alignment(self) -> int:
        return int(struct.unpack_from("<I", self.optional_header, _OPT_SECTION_ALIGNMENT)[0])

    @property
    def file_alignment(self) -> int:
        return int(struct.unpack_from("<I", self.optional_header, _OPT_FILE_ALIGNMENT)[0])

    @property
    def timestamp(self) -> int:
        return int(struct.unpack_from("<I", self.file_header, 4)[0])

    def section(self, name: str) -> SectionHeader | None:
        return next((s for s in self.sections if s.name == name), None)


@dataclass(frozen=True)
class NewSection:
    """A section to append: its name and the file holding its bytes."""

    name: str
    path: Path


def _bad(what: str, message: str) -> InvalidInput:
    return InvalidInput(f"{what}: not a usable PE32+ image: {message}")


def parse(data: bytes, what: str = "PE image") -> PeFile:
    """Parse the headers of a PE32+ image; anything malformed is an InvalidInput naming `what`."""
    if len(data) < DOS_HEADER_SIZE or data[:2] != b"MZ":
        raise _bad(what, "missing MZ signature")
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if lfanew + 4 + FILE_HEADER_SIZE > len(data) or data[lfanew : lfanew + 4] != b"PE\0\0":
        raise _bad(what, "missing PE signature")
    file_header = data[lfanew + 4 : lfanew + 4 + FILE_HEADER_SIZE]
    _, count, _, _, _, opt_size, _ = struct.unpack("<HHIIIHH", file_header)
    opt_start = lfanew + 4 + FILE_HEADER_SIZE
    optional = data[opt_start : opt_start + opt_size]
    if len(optional) != opt_size or opt_size < 112:
        raise _bad(what, "truncated optional header")
    if struct.unpack_from("<H", optional, 0)[0] != PE32_PLUS:
        raise _bad(what, "not PE32+ (64-bit)")
    table = opt_start + opt_size
    if table + count * SECTION_HEADER_SIZE > len(data):
        raise _bad(what, "truncated section table")
    sections = []
    for index in range(count):
        raw_name, vsize, vaddr, rsize, rptr = struct.unpack_from(
            "<8sIIII", data, table + index * SECTION_HEADER_SIZE
        )
        (flags,) = struct.unpack_from("<I", data, table + index * SECTION_HEADER_SIZE + 36)
        if rptr + rsize > len(data):
            raise _bad(what, f"section {index} lies beyond the end of the file")
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        sections.append(SectionHeader(name, vsize, vaddr, rsize, rptr, flags))
    if not sections:
        raise _bad(what, "no sections")
    alignments = struct.unpack_from("<II", optional, _OPT_SECTION_ALIGNMENT)
    if any(a == 0 or a & (a - 1) for a in alignments):
        raise _bad(what, "section/file alignment is not a power of two")
    return PeFile(data[:DOS_HEADER_SIZE], file_header, optional, tuple(sections))


def read_section(path: Path, name: str) -> bytes | None:
    """The bytes of section `name` (trimmed to its virtual size), or None if absent."""
    data = path.read_bytes()
    header = parse(data, str(path)).section(name)
    if header is None:
        return None
    size = min(header.virtual_size or header.raw_size, header.raw_size)
    return data[header.raw_pointer : header.raw_pointer + size]


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


def assemble(stub: Path, sections: Sequence[NewSection], out: Path, *, epoch: int) -> None:
    """Write `stub` plus `sections` (in order) to `out`."""
    data = stub.read_bytes()
    pe = parse(data, str(stub))
    sa, fa = pe.section_alignment, pe.file_alignment
    last = pe.sections[-1]
    vaddr = _align(last.virtual_address + last.virtual_size, sa)

    headers: list[SectionHeader] = [
        SectionHeader(s.name, s.virtual_size, s.virtual_address, s.raw_size, 0, s.characteristics)
        for s in pe.sections
    ]
    sources: list[tuple[Path | None, int]] = [(None, s.raw_pointer) for s in pe.sections]
    for new in sections:
        if len(new.name.encode()) > 8:
            raise InvalidInput(f"PE section name {new.name!r} is longer than 8 bytes")
        size = new.path.stat().st_size
        headers.append(SectionHeader(new.name, size, vaddr, _align(size, fa), 0, APPENDED_FLAGS))
        sources.append((new.path, 0))
        vaddr = _align(vaddr + size, sa)

    opt = bytearray(pe.optional_header)
    size_of_headers = _align(
        NEW_LFANEW + 4 + FILE_HEADER_SIZE + len(opt) + SECTION_HEADER_SIZE * len(headers), fa
    )
    init_data = sum(h.raw_size for h in headers if h.characteristics & SCN_INITIALIZED_DATA)
    code = sum(h.raw_size for h in headers if not h.characteristics & SCN_INITIALIZED_DATA)
    end = headers[-1].virtual_address + headers[-1].virtual_size
    struct.pack_into("<BB", opt, _OPT_LINKER, 0, 0)
    struct.pack_into("<II", opt, _OPT_SIZE_OF_CODE, code, init_data)
    struct.pack_into("<I", opt, _OPT_SIZE_OF_IMAGE, _align(end, sa))
    struct.pack_into("<I", opt, _OPT_SIZE_OF_HEADERS, size_of_headers)
    struct.pack_into("<I", opt, _OPT_CHECKSUM, 0)

    file_header = bytearray(pe.file_header)
    # The COFF symbol table of the stub is not carried over (upstream refuses stubs that have one).
    struct.pack_into("<HIII", file_header, 2, len(headers), epoch & 0xFFFFFFFF, 0, 0)

    dos = bytearray(pe.dos_header)
    struct.pack_into("<I", dos, 0x3C, NEW_LFANEW)
    table = bytearray()
    offset = size_of_headers
    placed: list[SectionHeader] = []
    for h in headers:
        placed.append(
            SectionHeader(h.name, h.virtual_size, h.virtual_address, h.raw_size, offset, 0)
        )
        table += struct.pack(
            "<8sIIIIIIHHI",
            h.name.encode(),
            h.virtual_size,
            h.virtual_address,
            h.raw_size,
            offset,
            0,
            0,
            0,
            0,
            h.characteristics,
        )
        offset += h.raw_size

    with out.open("wb") as f:
        f.write(bytes(dos) + bytes(NEW_LFANEW - DOS_HEADER_SIZE) + b"PE\0\0")
        f.write(bytes(file_header) + bytes(opt) + bytes(table))
        f.write(bytes(size_of_headers - f.tell()))
        for h, (path, source_offset) in zip(placed, sources, strict=True):
            if path is None:
                chunk = data[source_offset : source_offset + h.raw_size]
                f.write(chunk)
                written = len(chunk)
            else:
                f.flush()
                _append_file(f.fileno(), path, h.virtual_size)
                written = h.virtual_size
            f.write(bytes(h.raw_size - written))


def _append_file(dst: int, src: Path, size: int) -> None:
    """Append `size` bytes of `src` at the position of `dst`, copied inside the kernel.

    The kernel and initramfs are most of a UKI; copy_file_range spares copying them through
    Python buffers.
    """
    with src.open("rb", buffering=0) as f:
        remaining = size
        in_kernel = True
        while remaining:
            if in_kernel:
                try:
                    copied = os.copy_file_range(f.fileno(), dst, remaining)
                except OSError as exc:
                    # Cross-device on older kernels, or a file system without it.
                    if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    in_kernel = False
                    continue
            else:
                chunk = f.read(min(remaining, 1 << 20))
                copied = len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view) :]
            if copied == 0:
                raise InvalidInput(f"{src} shrank while it was copied into the PE image")
            remaining -= copied
