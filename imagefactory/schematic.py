"""Schematic model: upstream's fields, in upstream's serialization order, as frozen dataclasses.

Strict parsing (YAML or JSON, Go yaml semantics), canonical bytes (Go yaml.Marshal) and the ID.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagefactory import goresolve as gr
from imagefactory.errors import InvalidInput
from imagefactory.goyaml import GoStruct, marshal
from imagefactory.yamlload import (
    MAPPING,
    MISSING,
    SCALAR,
    SEQUENCE,
    Constructor,
    Node,
    compose_first_document,
)


class Bootloader(enum.StrEnum):
    DUAL_BOOT = "dual-boot"
    SD_BOOT = "sd-boot"
    GRUB = "grub"


@dataclass(frozen=True)
class MetaValue:
    key: int
    value: str


@dataclass(frozen=True)
class Overlay:
    image: str = ""
    name: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SecureBoot:
    enroll_keys: str = ""
    include_well_known_certificates: bool = False


@dataclass(frozen=True)
class DiskImage:
    sector_size: int = 0


@dataclass(frozen=True)
class Customization:
    embedded_machine_configuration: str = ""
    extra_kernel_args: tuple[str, ...] = ()
    meta: tuple[MetaValue, ...] = ()
    official_extensions: tuple[str, ...] = ()
    bootloader: Bootloader | None = None
    secureboot: SecureBoot = field(default_factory=SecureBoot)
    disk_image: DiskImage = field(default_factory=DiskImage)


@dataclass(frozen=True)
class Schematic:
    owner: str = ""
    overlay: Overlay = field(default_factory=Overlay)
    customization: Customization = field(default_factory=Customization)

    def canonical(self) -> bytes:
        return self.canonical_bytes

    @functools.cached_property
    def canonical_bytes(self) -> bytes:
        return canonical(self)

    @functools.cached_property
    def id(self) -> str:
        """Lowercase hex sha256 of the canonical bytes, as upstream's Schematic.ID()."""
        return hashlib.sha256(self.canonical_bytes).hexdigest()


Handler = Callable[[Constructor, Node], Any]

_BOOTLOADER_NAMES = {"none": None, **{b.value: b for b in Bootloader}}


def _to_bootloader(c: Constructor, node: Node) -> Any:
    """imageropts.BootloaderKind is a TextUnmarshaler: enumer names, case-insensitive."""
    if node.kind != SCALAR:
        tag = gr.MAP if node.kind == MAPPING else gr.SEQ
        c.error(node, f"cannot construct {tag} into imageropts.BootloaderKind (TextUnmarshaler)")
        return MISSING
    _, value = c.scalar(node)
    if value is None:
        return MISSING
    text = value if isinstance(value, str) else node.value
    for candidate in (text, text.lower()):
        if candidate in _BOOTLOADER_NAMES:
            return _BOOTLOADER_NAMES[candidate]
    c.error(node, f"{text} does not belong to BootloaderKind values")
    return MISSING


def _slice(c: Constructor, node: Node, type_name: str, element: Handler) -> Any:
    if node.kind == SCALAR:
        tag, value = c.scalar(node)
        if value is None:
            return ()
        if tag != gr.MERGE:
            c.type_error(node, tag, type_name)
        return MISSING
    if node.kind == MAPPING:
        c.type_error(node, gr.MAP, type_name)
        return MISSING
    items = [c.apply(child, element) for child in node.children]
    return tuple(item for item in items if item is not MISSING)


def _struct(c: Constructor, node: Node, type_name: str, spec: Mapping[str, Handler]) -> Any:
    if node.kind == SCALAR:
        tag, value = c.scalar(node)
        if value is not None and tag != gr.MERGE:
            c.type_error(node, tag, type_name)
        return MISSING
    if node.kind == SEQUENCE:
        c.type_error(node, gr.SEQ, type_name)
        return MISSING
    if not c.unique_keys(node):
        return MISSING
    out: dict[str, Any] = {}
    _fill_struct(c, node, type_name, spec, out)
    return out


def _fill_struct(
    c: Constructor, node: Node, type_name: str, spec: Mapping[str, Handler], out: dict[str, Any]
) -> None:
    """constructor.go mappingStruct() with KnownFields: unknown and repeated fields are errors."""
    merged, c.merged = c.merged, None
    done: set[str] = set()
    merge_node: Node | None = None
    pairs = node.children
    for i in range(0, len(pairs), 2):
        key_node, value_node = pairs[i], pairs[i + 1]
        if key_node.kind == SCALAR and key_node.short_tag() == gr.MERGE:
            merge_node = value_node
            continue
        name = c.apply(key_node, _string)
        if name is MISSING:
            continue
        if merged is not None:
            if ("str", name) in merged:
                continue
            merged.add(("str", name))
        handler = spec.get(name)
        if handler is None:
            c.error(key_node, f"field {name} not found in type {type_name}")
            continue
        if name in done:
            c.error(key_node, f"field {name} already set in type {type_name}")
            continue
        done.add(name)
        value = c.apply(value_node, handler)
        if value is not MISSING:
            out[name] = value
    c.merged = merged
    if merge_node is not None:

        def apply(n: Node) -> None:
            def fill(m: Node) -> None:
                if c.unique_keys(m):
                    _fill_struct(c, m, type_name, spec, out)

            c.construct(n, fill)

        c.merge(node, merge_node, apply)


def _string(c: Constructor, node: Node) -> Any:
    return c.to_string(node)


_META: dict[str, Handler] = {
    "key": lambda c, n: c.to_uint(n, 255, "uint8"),
    "value": _string,
}
_SYSTEM_EXTENSIONS: dict[str, Handler] = {
    "officialExtensions": lambda c, n: _slice(c, n, "[]string", _string),
}
_SECUREBOOT: dict[str, Handler] = {
    "enrollKeys": _string,
    "includeWellKnownCertificates": lambda c, n: c.to_bool(n),
}
_DISK_IMAGE: dict[str, Handler] = {
    "sectorSize": lambda c, n: c.to_uint(n, gr.UINT64_MAX, "uint"),
}
_CUSTOMIZATION: dict[str, Handler] = {
    "embeddedMachineConfiguration": _string,
    "extraKernelArgs": lambda c, n: _slice(c, n, "[]string", _string),
    "meta": lambda c, n: _slice(
        c, n, "[]schematic.MetaValue", lambda c2, m: _struct(c2, m, "schematic.MetaValue", _META)
    ),
    "systemExtensions": lambda c, n: _struct(
        c, n, "schematic.SystemExtensions", _SYSTEM_EXTENSIONS
    ),
    "bootloader": _to_bootloader,
    "secureboot": lambda c, n: _struct(c, n, "schematic.SecureBootCustomization", _SECUREBOOT),
    "diskImage": lambda c, n: _struct(c, n, "schematic.DiskImageCustomization", _DISK_IMAGE),
}
_OVERLAY: dict[str, Handler] = {
    "image": _string,
    "name": _string,
    "options": lambda c, n: c.string_map(n, "map[string]interface {}"),
}
_SCHEMATIC: dict[str, Handler] = {
    "owner": _string,
    "overlay": lambda c, n: _struct(c, n, "schematic.Overlay", _OVERLAY),
    "customization": lambda c, n: _struct(c, n, "schematic.Customization", _CUSTOMIZATION),
}


def _schematic(c: Constructor, node: Node) -> Any:
    return _struct(c, node, "schematic.Schematic", _SCHEMATIC)


def parse_schematic(data: bytes, *, source: str = "<stdin>") -> Schematic:
    """Strict parse of a YAML or JSON schematic, as upstream's schematic.Unmarshal + Validate."""
    root = compose_first_document(data, source)
    c = Constructor(source)
    fields = c.apply(root, _schematic)
    c.raise_errors()
    schematic = _build(fields if fields is not MISSING else {})
    if schematic.owner:
        raise InvalidInput(f"{source}: owner field is only supported in Enterprise edition")
    return schematic


def _build(f: dict[str, Any]) -> Schematic:
    o = f.get("overlay", {})
    cu = f.get("customization", {})
    sb = cu.get("secureboot", {})
    return Schematic(
        owner=f.get("owner", ""),
        overlay=Overlay(
            image=o.get("image", ""), name=o.get("name", ""), options=o.get("options") or {}
        ),
        customization=Customization(
            embedded_machine_configuration=cu.get("embeddedMachineConfiguration", ""),
            extra_kernel_args=cu.get("extraKernelArgs", ()),
            meta=tuple(
                MetaValue(key=m.get("key", 0), value=m.get("value", "")) for m in cu.get("meta", ())
            ),
            official_extensions=cu.get("systemExtensions", {}).get("officialExtensions", ()),
            bootloader=cu.get("bootloader"),
            secureboot=SecureBoot(
                enroll_keys=sb.get("enrollKeys", ""),
                include_well_known_certificates=sb.get("includeWellKnownCertificates", False),
            ),
            disk_image=DiskImage(sector_size=cu.get("diskImage", {}).get("sectorSize", 0)),
        ),
    )


def _fields(*items: tuple[str, Any, bool]) -> GoStruct:
    return GoStruct(tuple((name, value) for name, value, keep in items if keep))


def to_go(s: Schematic) -> GoStruct:
    """The schematic as Go's yaml.Marshal sees it: struct order, omitempty applied."""
    o, cu = s.overlay, s.customization
    options = dict(o.options)
    meta = tuple(GoStruct((("key", m.key), ("value", m.value))) for m in cu.meta)
    sb = cu.secureboot
    return _fields(
        ("owner", s.owner, bool(s.owner)),
        (
            "overlay",
            _fields(
                ("image", o.image, True),
                ("name", o.name, True),
                ("options", options, bool(options)),
            ),
            bool(o.image or o.name or options),
        ),
        (
            "customization",
            _fields(
                (
                    "embeddedMachineConfiguration",
                    cu.embedded_machine_configuration,
                    bool(cu.embedded_machine_configuration),
                ),
                ("extraKernelArgs", tuple(cu.extra_kernel_args), bool(cu.extra_kernel_args)),
                ("meta", meta, bool(meta)),
                (
                    "systemExtensions",
                    _fields(("officialExtensions", tuple(cu.official_extensions), True)),
                    bool(cu.official_extensions),
                ),
                (
                    "bootloader",
                    cu.bootloader.value if cu.bootloader else "",
                    cu.bootloader is not None,
                ),
                (
                    "secureboot",
                    _fields(
                        ("enrollKeys", sb.enroll_keys, bool(sb.enroll_keys)),
                        (
                            "includeWellKnownCertificates",
                            sb.include_well_known_certificates,
                            sb.include_well_known_certificates,
                        ),
                    ),
                    bool(sb.enroll_keys or sb.include_well_known_certificates),
                ),
                (
                    "diskImage",
                    _fields(("sectorSize", cu.disk_image.sector_size, True)),
                    cu.disk_image.sector_size != 0,
                ),
            ),
            True,
        ),
    )


def canonical(s: Schematic) -> bytes:
    """Upstream's yaml.Marshal bytes: what the ID hashes."""
    return marshal(to_go(s))


def schematic_id(s: Schematic) -> str:
    return hashlib.sha256(canonical(s)).hexdigest()
