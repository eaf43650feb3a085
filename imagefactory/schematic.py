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

from yaml import MappingNode, ScalarNode, SequenceNode

from imagefactory import goresolve as gr
from imagefactory.errors import InvalidInput
from imagefactory.goyaml import GoStruct, inline_scalar, marshal
from imagefactory.yamlload import (
    MAPPING,
    MISSING,
    SCALAR,
    SEQUENCE,
    Constructor,
    Node,
    compose_fast,
    compose_first_document,
    from_composed,
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


def _struct(c: Constructor, node: Node, type_name: str, spec: Mapping[str, _Field]) -> Any:
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
    c: Constructor, node: Node, type_name: str, spec: Mapping[str, _Field], out: dict[str, Any]
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
        entry = spec.get(name)
        if entry is None:
            c.error(key_node, f"field {name} not found in type {type_name}")
            continue
        if name in done:
            c.error(key_node, f"field {name} already set in type {type_name}")
            continue
        done.add(name)
        value = c.apply(value_node, entry.slow)
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


# ---- fast path: the same decoding for plain documents, read from PyYAML's C-composed nodes ----
#
# Each fast handler takes a yaml.Node and returns the value its slow handler would, MISSING where
# the slow one sets nothing, or _BAIL for anything it does not handle (explicit tags, unusual
# types, any error): then the whole document takes the slow path, which alone words errors.


class _Bail:
    """The fast path declines this document."""


_BAIL = _Bail()
FastHandler = Callable[[Any], Any]

# A plain scalar whose first character is none of these resolves to !!str (resolve.go hints).
_MAYBE_NOT_STR = frozenset(("", "+", "-", ".", "<", "~", *"0123456789yYnNtTfFoO"))
_AS_TEXT = frozenset((gr.STR, gr.INT, gr.FLOAT, gr.BOOL))
_NOTHING = frozenset((gr.NULL, gr.MERGE))


def _plain_tag(node: Any) -> str:
    """The resolved tag of an untagged scalar node, !!str when quoted ("" when not a scalar)."""
    if type(node) is not ScalarNode or node.tag:
        return ""
    text: str = node.value
    if node.style or text[:1] not in _MAYBE_NOT_STR:
        return gr.STR
    return gr.resolved_tag(text)


def _fast_string(node: Any) -> Any:
    tag = _plain_tag(node)
    if tag in _AS_TEXT:
        return node.value
    return MISSING if tag in _NOTHING else _BAIL


def _fast_uint(maximum: int) -> FastHandler:
    def handler(node: Any) -> Any:
        if type(node) is not ScalarNode or node.tag or node.style:
            return _BAIL
        tag, value = gr.resolve("", node.value)
        if tag == gr.INT and 0 <= value <= maximum:
            return value
        if tag == gr.FLOAT and 0 <= value <= maximum and value.is_integer():
            return int(value)
        return MISSING if tag in _NOTHING else _BAIL

    return handler


def _fast_bool(node: Any) -> Any:
    tag = _plain_tag(node)
    if tag == gr.BOOL:
        return gr.resolve("", node.value)[1]
    if tag == gr.STR:
        return gr.OLD_BOOLS.get(node.value, _BAIL)
    return MISSING if tag in _NOTHING else _BAIL


def _fast_bootloader(node: Any) -> Any:
    tag = _plain_tag(node)
    if tag == gr.NULL:
        return MISSING
    if not tag:
        return _BAIL
    text: str = node.value
    for candidate in (text, text.lower()):
        if candidate in _BOOTLOADER_NAMES:
            return _BOOTLOADER_NAMES[candidate]
    return _BAIL


def _fast_slice(element: FastHandler) -> FastHandler:
    def handler(node: Any) -> Any:
        if type(node) is SequenceNode and not node.tag:
            items = []
            for child in node.value:
                item = element(child)
                if item is _BAIL:
                    return _BAIL
                if item is not MISSING:
                    items.append(item)
            return tuple(items)
        tag = _plain_tag(node)
        if tag == gr.NULL:
            return ()
        return MISSING if tag == gr.MERGE else _BAIL

    return handler


def _fast_struct(spec: Mapping[str, _Field]) -> FastHandler:
    def handler(node: Any) -> Any:
        if type(node) is not MappingNode or node.tag:
            tag = _plain_tag(node)
            return MISSING if tag in _NOTHING else _BAIL
        out: dict[str, Any] = {}
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if type(key_node) is not ScalarNode or key_node.tag:
                return _BAIL
            # Every field name resolves to !!str, so any untagged scalar spelling of it is it.
            name = key_node.value
            field = spec.get(name)
            if field is None or name in seen:
                return _BAIL
            seen.add(name)
            value = field.fast(value_node)
            if value is _BAIL:
                return _BAIL
            if value is not MISSING:
                out[name] = value
        return out

    return handler


def _fast_options(node: Any) -> Any:
    """Overlay options decode into `any`: handed to the slow constructor, bailing on any error."""
    c = Constructor("<fast>")
    try:
        value = c.apply(from_composed(node), _options)
    except InvalidInput:
        return _BAIL
    return _BAIL if c.errors else value


@dataclass(frozen=True)
class _Field:
    slow: Handler
    fast: FastHandler


def _options(c: Constructor, n: Node) -> Any:
    return c.string_map(n, "map[string]interface {}")


def _struct_field(type_name: str, spec: Mapping[str, _Field]) -> _Field:
    return _Field(lambda c, n: _struct(c, n, type_name, spec), _fast_struct(spec))


def _slice_field(type_name: str, element: _Field) -> _Field:
    return _Field(lambda c, n: _slice(c, n, type_name, element.slow), _fast_slice(element.fast))


_STRING = _Field(_string, _fast_string)
_META: dict[str, _Field] = {
    "key": _Field(lambda c, n: c.to_uint(n, 255, "uint8"), _fast_uint(255)),
    "value": _STRING,
}
_SYSTEM_EXTENSIONS: dict[str, _Field] = {
    "officialExtensions": _slice_field("[]string", _STRING),
}
_SECUREBOOT: dict[str, _Field] = {
    "enrollKeys": _STRING,
    "includeWellKnownCertificates": _Field(lambda c, n: c.to_bool(n), _fast_bool),
}
_DISK_IMAGE: dict[str, _Field] = {
    "sectorSize": _Field(
        lambda c, n: c.to_uint(n, gr.UINT64_MAX, "uint"), _fast_uint(gr.UINT64_MAX)
    ),
}
_CUSTOMIZATION: dict[str, _Field] = {
    "embeddedMachineConfiguration": _STRING,
    "extraKernelArgs": _slice_field("[]string", _STRING),
    "meta": _slice_field("[]schematic.MetaValue", _struct_field("schematic.MetaValue", _META)),
    "systemExtensions": _struct_field("schematic.SystemExtensions", _SYSTEM_EXTENSIONS),
    "bootloader": _Field(_to_bootloader, _fast_bootloader),
    "secureboot": _struct_field("schematic.SecureBootCustomization", _SECUREBOOT),
    "diskImage": _struct_field("schematic.DiskImageCustomization", _DISK_IMAGE),
}
_OVERLAY: dict[str, _Field] = {
    "image": _STRING,
    "name": _STRING,
    "options": _Field(_options, _fast_options),
}
_SCHEMATIC = _struct_field(
    "schematic.Schematic",
    {
        "owner": _STRING,
        "overlay": _struct_field("schematic.Overlay", _OVERLAY),
        "customization": _struct_field("schematic.Customization", _CUSTOMIZATION),
    },
)


def _slow_fields(data: bytes, source: str) -> dict[str, Any]:
    root = compose_first_document(data, source)
    c = Constructor(source)
    fields = c.apply(root, _SCHEMATIC.slow)
    c.raise_errors()
    return fields if fields is not MISSING else {}


def _fast_fields(data: bytes) -> dict[str, Any] | None:
    root = compose_fast(data)
    if root is None:
        return None
    fields = _SCHEMATIC.fast(root)
    if fields is _BAIL:
        return None
    return fields if fields is not MISSING else {}


def parse_schematic(data: bytes, *, source: str = "<stdin>", fast: bool = True) -> Schematic:
    """Strict parse of a YAML or JSON schematic, as upstream's schematic.Unmarshal + Validate.

    `fast=False` forces the slow path (the reference the fast path is tested against).
    """
    fields = _fast_fields(data) if fast else None
    if fields is None:
        fields = _slow_fields(data, source)
    schematic = _build(fields)
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


def canonical(s: Schematic, *, fast: bool = True) -> bytes:
    """Upstream's yaml.Marshal bytes: what the ID hashes.

    `fast=False` forces the general emitter (the reference the fast writer is tested against).
    """
    text = _canonical_text(s) if fast else None
    if text is None:
        return marshal(to_go(s), fast=False)
    return text.encode("utf-8", "surrogateescape")


def _canonical_text(s: Schematic) -> str | None:
    """What marshal(to_go(s)) writes, laid out directly when every string fits on its line.

    None (the general emitter decides) for overlay options and strings needing a block scalar or
    a tag. Fields, order and omitempty follow to_go; a property test holds the two equal.
    """
    o, cu = s.overlay, s.customization
    if o.options:
        return None
    out: list[str] = []
    if s.owner:
        owner = inline_scalar(s.owner)
        if owner is None:
            return None
        out.append(f"owner: {owner}\n")
    if o.image or o.name:
        image, name = inline_scalar(o.image), inline_scalar(o.name)
        if image is None or name is None:
            return None
        out.append(f"overlay:\n    image: {image}\n    name: {name}\n")
    out.append("customization:")
    mark = len(out)
    if cu.embedded_machine_configuration:
        config = inline_scalar(cu.embedded_machine_configuration)
        if config is None:
            return None
        out.append(f"\n    embeddedMachineConfiguration: {config}")
    if cu.extra_kernel_args:
        out.append("\n    extraKernelArgs:")
        for arg in cu.extra_kernel_args:
            text = inline_scalar(arg)
            if text is None:
                return None
            out.append(f"\n        - {text}")
    if cu.meta:
        out.append("\n    meta:")
        for m in cu.meta:
            value = inline_scalar(m.value)
            if value is None:
                return None
            out.append(f"\n        - key: {m.key}\n          value: {value}")
    if cu.official_extensions:
        out.append("\n    systemExtensions:\n        officialExtensions:")
        for ext in cu.official_extensions:
            text = inline_scalar(ext)
            if text is None:
                return None
            out.append(f"\n            - {text}")
    if cu.bootloader is not None:
        out.append(f"\n    bootloader: {cu.bootloader.value}")
    sb = cu.secureboot
    if sb.enroll_keys or sb.include_well_known_certificates:
        out.append("\n    secureboot:")
        if sb.enroll_keys:
            keys = inline_scalar(sb.enroll_keys)
            if keys is None:
                return None
            out.append(f"\n        enrollKeys: {keys}")
        if sb.include_well_known_certificates:
            out.append("\n        includeWellKnownCertificates: true")
    if cu.disk_image.sector_size:
        out.append(f"\n    diskImage:\n        sectorSize: {cu.disk_image.sector_size}")
    out.append("\n" if len(out) > mark else " {}\n")
    return "".join(out)


def schematic_id(s: Schematic) -> str:
    return hashlib.sha256(canonical(s)).hexdigest()
