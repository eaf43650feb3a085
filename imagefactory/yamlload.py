"""Bounded YAML loading with Go yaml (v4, v3 defaults) decoding semantics for untrusted input.

Composes the first document from libyaml events (size, depth and alias-expansion bounds), then
constructs Go-like values (`any`, strings, bools, unsigned ints) collecting Go-worded errors.
A fast path lets PyYAML's C composer build plain documents; anything unusual takes the slow path.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from imagefactory import goresolve as gr
from imagefactory.errors import InvalidInput
from imagefactory.gotext import go_quote

_Parser: Any
try:
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _Parser = None

_FastParser: Any = None
if _Parser is not None:
    # The C composer asks these for implicit tags; "" leaves resolution to goresolve (Go's rules)
    # and a builtin that ignores its arguments saves a Python call per node.
    _FastParser = type(
        "_FastParser",
        (_Parser,),
        dict.fromkeys(("resolve", "descend_resolver", "ascend_resolver"), "".format),
    )

MAX_BYTES = 1 << 20
# Go allows depth 10000, but Python recursion in the constructor does not; no schematic nests deeper.
MAX_DEPTH = 200


@dataclass(frozen=True)
class Limits:
    """Bounds on every YAML/JSON input the factory reads; each settable from the environment.

    `schematic_bytes` bounds a schematic file or body and also what its aliases may expand to
    (the canonical schematic must fit the same size); raise it for a large embedded machine config.
    """

    schematic_bytes: int = MAX_BYTES
    config_bytes: int = 1 << 20
    lock_bytes: int = 64 << 20
    depth: int = MAX_DEPTH


# Limits field -> environment variable that overrides it (an integer).
LIMIT_VARIABLES = {
    "schematic_bytes": "IMAGEFACTORY_MAX_SCHEMATIC_BYTES",
    "config_bytes": "IMAGEFACTORY_MAX_CONFIG_BYTES",
    "lock_bytes": "IMAGEFACTORY_MAX_LOCK_BYTES",
    "depth": "IMAGEFACTORY_MAX_YAML_DEPTH",
}


@functools.cache
def limits() -> Limits:
    """The limits in force: defaults, overridden by IMAGEFACTORY_MAX_* variables."""
    values: dict[str, int] = {}
    for name, variable in LIMIT_VARIABLES.items():
        text = os.environ.get(variable)
        if text is None:
            continue
        if not (text.isdigit() and len(text) <= 12 and int(text) > 0):
            raise InvalidInput(f"{variable}: not a positive integer of at most 12 digits")
        values[name] = int(text)
    # Python recursion composes and constructs nested nodes: keep a margin under its limit.
    values["depth"] = min(values.get("depth", MAX_DEPTH), 2000)
    return Limits(**values)


SCALAR, SEQUENCE, MAPPING, ALIAS = "scalar", "sequence", "mapping", "alias"


class Node:
    """A composed YAML node: what go-yaml's parser hands its constructor."""

    __slots__ = ("alias", "anchor", "children", "kind", "line", "style", "tag", "value")

    def __init__(self, kind: str, tag: str, value: str, style: str, line: int) -> None:
        self.kind = kind
        self.tag = tag  # explicit tag in short form ("!!int", "!foo"), "" when implicit or "!"
        self.value = value  # scalar text, or the anchor name of an alias
        self.style = style  # "" plain, or one of ' " | >
        self.line = line
        self.anchor = ""
        self.children: list[Node] = []
        self.alias: Node | None = None

    def short_tag(self) -> str:
        """Node.ShortTag(): the tag the constructor dispatches on."""
        if self.kind == ALIAS:
            return self.alias.short_tag() if self.alias is not None else ""
        if self.kind == SCALAR:
            if self.indicated_string():
                return gr.STR
            if self.tag == "":
                return gr.resolved_tag(self.value)
            return self.tag
        if self.tag:
            return self.tag
        return gr.MAP if self.kind == MAPPING else gr.SEQ

    def indicated_string(self) -> bool:
        return self.tag == gr.STR or (self.tag == "" and self.style != "")


def _fail(source: str, line: int, message: str) -> InvalidInput:
    where = f"line {line}: " if line else ""
    return InvalidInput(f"{source}: yaml: {where}{message}")


# go-yaml v4 rc.6 and later read YAML 1.2's character set: DEL and the C1 controls (0x7F-0x9F)
# are accepted, which libyaml refuses. They stand in as private-use characters while libyaml reads
# and are swapped back in the composed nodes: one character for one, so lines and columns hold.
_YAML12_ONLY = re.compile(rb"\x7f|\xc2[\x80-\x84\x86-\x9f]")
_C1_AND_DEL = (0x7F, *range(0x80, 0x85), *range(0x86, 0xA0))
# Private-use blocks of 256 (planes 15 and 16): the first the document does not use.
_STAND_IN_BASES = (*range(0x100000, 0x10FF00, 0x100), *range(0xF0000, 0xFFF00, 0x100))


def _with_stand_ins(data: bytes) -> tuple[bytes, dict[int, int] | None]:
    """`data` with DEL/C1 replaced, and the table that restores them (None: nothing replaced)."""
    if not _YAML12_ONLY.search(data):
        return data, None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data, None  # the reader reports the bad octet
    used = set(text)
    for base in _STAND_IN_BASES:
        forward = {c: base + c for c in _C1_AND_DEL}
        if not any(chr(v) in used for v in forward.values()):
            return text.translate(forward).encode(), {v: c for c, v in forward.items()}
    return data, None


def _restore(root: Node, table: dict[int, int]) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        node.value = node.value.translate(table)
        node.anchor = node.anchor.translate(table)
        node.tag = node.tag.translate(table)
        stack.extend(node.children)


def _reader_message(exc: yaml.YAMLError) -> str:
    """libyaml's reader errors in go-yaml v4's words: `control characters are not allowed (value: 1)`."""
    reason, character = getattr(exc, "reason", None), getattr(exc, "character", None)
    if isinstance(reason, str) and isinstance(character, int):
        return f"{reason} (value: {character})" if character >= 0 else reason
    return " ".join(str(exc).split())


def compose_first_document(
    data: bytes, source: str, *, max_bytes: int | None = None, what: str = "schematic"
) -> Node:
    """The root node of the first document; later documents are never read (as upstream)."""
    max_bytes = limits().schematic_bytes if max_bytes is None else max_bytes
    if len(data) > max_bytes:
        raise InvalidInput(f"{source}: {what} is larger than {max_bytes} bytes")
    data, restore = _with_stand_ins(data)
    parser: Any = _Parser(data) if _Parser is not None else yaml.Loader(data)
    try:
        root = _compose(parser, source, limits().depth)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        message = str(exc.problem or exc.context)
        raise _fail(source, line, message.translate(restore or {})) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: yaml: {_reader_message(exc)}") from None
    finally:
        parser.dispose()
    if root is None:
        raise InvalidInput(f"{source}: {what} is empty (no YAML document)")
    if restore is not None:
        _restore(root, restore)
    return root


# Every collection carries at least one of these: a block sequence "-", a block mapping ":" or "?",
# a flow collection "[" or "{". Their count bounds the nesting depth.
_COLLECTION_INDICATORS = (b":", b"-", b"?", b"[", b"{")


def compose_fast(data: bytes) -> Any:
    """The first document as PyYAML's C composer builds it (yaml.Node, tags "" when implicit).

    None when only compose_first_document may read the input: anchors or aliases (PyYAML refuses
    a redefined anchor, Go allows it, and only the event composer bounds alias expansion), a
    possible nesting beyond MAX_DEPTH (the C composer recurses on the C stack with no guard), or
    any error (the slow path words it as Go does).
    """
    bounds = limits()
    if _FastParser is None or len(data) > bounds.schematic_bytes or b"&" in data or b"*" in data:
        return None
    if _YAML12_ONLY.search(data):
        return None
    if sum(map(data.count, _COLLECTION_INDICATORS)) > bounds.depth:
        return None
    parser = _FastParser(data)
    try:
        return parser.get_node() if parser.check_node() else None
    except Exception:  # the slow path reports (or, if it disagrees, accepts) this input
        return None
    finally:
        parser.dispose()


def from_composed(node: Any) -> Node:
    """A C-composed yaml.Node (no anchors) as the Node the Go constructor reads."""
    tag = short_tag_of(node.tag)
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        return Node(SCALAR, tag, node.value, node.style or "", line)
    if isinstance(node, yaml.SequenceNode):
        out = Node(SEQUENCE, tag, "", "", line)
        out.children = [from_composed(child) for child in node.value]
        return out
    out = Node(MAPPING, tag, "", "", line)
    out.children = [from_composed(n) for pair in node.value for n in pair]
    return out


def short_tag_of(tag: str | None) -> str:
    """The Node.tag of an explicit tag: "" for none or the non-specific "!"."""
    return "" if tag is None or tag == "!" else gr.short_tag(tag)


def _compose(parser: Any, source: str, max_depth: int) -> Node | None:
    anchors: dict[str, Node] = {}
    stack: list[Node] = []
    get_event = parser.get_event
    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    mapping_start, sequence_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
    mapping_end, sequence_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    while True:
        event = get_event()
        kind = type(event)
        if kind is scalar_event and event.tag is None and event.anchor is None:
            # The common case, kept short: an untagged, unanchored scalar.
            node = Node(SCALAR, "", event.value, event.style or "", event.start_mark.line + 1)
            if not stack:
                return node
            stack[-1].children.append(node)
            continue
        if kind is mapping_end or kind is sequence_end:
            done = stack.pop()
            if not stack:
                return done
            continue
        if kind is scalar_event or kind is alias_event:
            node = _leaf(event, anchors, source)
        elif kind is mapping_start or kind is sequence_start:
            node = _collection(event, kind is mapping_start)
            if len(stack) >= max_depth:
                raise _fail(source, node.line, f"nesting deeper than {max_depth} levels")
        elif kind is yaml.StreamEndEvent or event is None:
            return None
        else:
            continue
        if node.anchor:
            # Go lets a later anchor of the same name replace an earlier one.
            anchors[node.anchor] = node
        if stack:
            stack[-1].children.append(node)
        elif node.kind in (SCALAR, ALIAS):
            return node
        if node.kind in (MAPPING, SEQUENCE):
            stack.append(node)


def _tag_of(event: Any) -> str:
    return short_tag_of(event.tag)


def _leaf(event: Any, anchors: dict[str, Node], source: str) -> Node:
    line: int = event.start_mark.line + 1
    if type(event) is yaml.AliasEvent:
        name = str(event.anchor)
        node = Node(ALIAS, "", name, "", line)
        node.alias = anchors.get(name)
        if node.alias is None:
            raise _fail(source, line, f"unknown anchor '{name}' referenced")
        return node
    node = Node(SCALAR, _tag_of(event), event.value, event.style or "", line)
    node.anchor = event.anchor or ""
    return node


def _collection(event: Any, mapping: bool) -> Node:
    node = Node(MAPPING if mapping else SEQUENCE, _tag_of(event), "", "", event.start_mark.line + 1)
    node.anchor = event.anchor or ""
    return node


@dataclass(frozen=True)
class AnyKeyMap:
    """Go map[interface{}]interface{}: a mapping whose keys are not all strings (e.g. `1: a`)."""

    items: tuple[tuple[Any, Any], ...]


class _Missing:
    """Returned by a construct step that set nothing (Go's `good == false`)."""


MISSING = _Missing()

# Go aborts decoding when alias expansion dominates (constructor.go DefaultAliasCheck).
_ALIAS_LOW, _ALIAS_HIGH = 400_000, 4_000_000


def _allowed_alias_ratio(count: int) -> float:
    if count <= _ALIAS_LOW:
        return 0.99
    if count >= _ALIAS_HIGH:
        return 0.10
    return 0.99 - 0.89 * (count - _ALIAS_LOW) / (_ALIAS_HIGH - _ALIAS_LOW)


def _key_identity(value: Any) -> tuple[str, Any]:
    # Go map keys compare by dynamic type and value: 1, 1.0 and true are distinct keys.
    return (type(value).__name__, value)


class Constructor:
    """Go constructor state: counts for the alias bound and the list of type errors."""

    def __init__(self, source: str, max_produced: int | None = None) -> None:
        self.source = source
        self.errors: list[str] = []
        # Bytes that alias expansion may add to the document: a node count alone lets ten
        # thousand aliases of one 100 KB string through.
        self.max_produced = limits().schematic_bytes if max_produced is None else max_produced
        self.produced = 0
        self.constructs = 0
        self.alias_constructs = 0
        self.alias_depth = 0
        self.expanding: set[int] = set()
        self.merged: set[Any] | None = None

    def fail(self, node: Node, message: str) -> InvalidInput:
        return _fail(self.source, node.line, message)

    def error(self, node: Node, message: str) -> None:
        self.errors.append(f"line {node.line}: {message}")

    def type_error(self, node: Node, tag: str, type_name: str) -> None:
        tag = node.tag or tag
        text = ""
        if tag not in (gr.SEQ, gr.MAP):
            raw = node.value.encode("utf-8", "surrogateescape")
            shown = raw if len(raw) <= 10 else raw[:7] + b"..."
            text = f" `{shown.decode('utf-8', 'replace')}`"
        self.error(node, f"cannot construct {tag}{text} into {type_name}")

    def raise_errors(self) -> None:
        if self.errors:
            joined = "; ".join(self.errors)
            raise InvalidInput(f"{self.source}: yaml: unmarshal errors: {joined}")

    def construct(self, node: Node, into: Callable[[Node], Any]) -> Any:
        """Count one construct step, following an alias the way constructor.go alias() does."""
        self.constructs += 1
        if self.alias_depth > 0:
            self.alias_constructs += 1
            self.count_produced(node)
            if (
                self.alias_constructs > 100
                and self.constructs > 1000
                and self.alias_constructs / self.constructs > _allowed_alias_ratio(self.constructs)
            ):
                raise self.fail(node, "document contains excessive aliasing")
        if node.kind != ALIAS:
            return into(node)
        if id(node) in self.expanding:
            raise self.fail(node, f"anchor '{node.value}' value contains itself")
        assert node.alias is not None
        self.expanding.add(id(node))
        self.alias_depth += 1
        try:
            return self.construct(node.alias, into)
        finally:
            self.alias_depth -= 1
            self.expanding.discard(id(node))

    def count_produced(self, node: Node) -> None:
        """Add what constructing `node` again adds to the value; fail beyond the bound."""
        value = node.value if node.kind == SCALAR else ""
        self.produced += 1 + (
            len(value) if value.isascii() else len(value.encode("utf-8", "surrogateescape"))
        )
        if self.produced > self.max_produced:
            raise self.fail(node, f"aliases expand the document beyond {self.max_produced} bytes")

    def apply(self, node: Node, handler: Callable[[Constructor, Node], Any]) -> Any:
        """construct() for a handler taking the constructor: no closure per node."""
        if node.kind != ALIAS and self.alias_depth == 0:
            self.constructs += 1
            return handler(self, node)
        return self.construct(node, lambda n: handler(self, n))

    # ---- scalars -------------------------------------------------------------------------------

    def scalar(self, node: Node) -> tuple[str, Any]:
        """(tag, Go value) of a scalar node, decoding !!binary as Go does."""
        if node.indicated_string():
            return gr.STR, node.value
        try:
            tag, value = gr.resolve(node.tag, node.value)
        except gr.ResolveError as exc:
            raise _fail(self.source, 0, str(exc)) from None
        if tag == gr.BINARY:
            try:
                raw = base64.b64decode(
                    value.replace("\n", "").replace("\r", "").encode("ascii"), validate=True
                )
            except (binascii.Error, UnicodeEncodeError):
                raise self.fail(node, "!!binary value contains invalid base64 data") from None
            value = raw.decode("utf-8", "surrogateescape")
        return tag, value

    def to_string(self, node: Node) -> Any:
        """Into a Go string field."""
        if node.kind != SCALAR:
            self.type_error(node, gr.MAP if node.kind == MAPPING else gr.SEQ, "string")
            return MISSING
        tag, value = self.scalar(node)
        if value is None or tag == gr.MERGE:
            return MISSING
        if tag in (gr.BINARY, gr.STR):
            return value
        if tag in (gr.INT, gr.FLOAT, gr.BOOL):
            return node.value
        self.type_error(node, tag, "string")
        return MISSING

    def to_bool(self, node: Node) -> Any:
        if node.kind != SCALAR:
            self.type_error(node, gr.MAP if node.kind == MAPPING else gr.SEQ, "bool")
            return MISSING
        tag, value = self.scalar(node)
        if value is None or tag == gr.MERGE:
            return MISSING
        if tag == gr.BOOL:
            return value
        if tag == gr.STR and value in gr.OLD_BOOLS:
            # YAML 1.1 spellings are accepted into a typed bool (constructStr).
            return gr.OLD_BOOLS[value]
        self.type_error(node, tag, "bool")
        return MISSING

    def to_uint(self, node: Node, maximum: int, type_name: str) -> Any:
        if node.kind != SCALAR:
            self.type_error(node, gr.MAP if node.kind == MAPPING else gr.SEQ, type_name)
            return MISSING
        tag, value = self.scalar(node)
        if value is None or tag == gr.MERGE:
            return MISSING
        if tag == gr.INT and 0 <= value <= maximum:
            return value
        # v4 accepts a float only when the conversion is lossless (10.0 -> 10, 10.5 fails).
        if (
            tag == gr.FLOAT
            and not math.isnan(value)
            and 0 <= value <= maximum
            and value.is_integer()
        ):
            return int(value)
        self.type_error(node, tag, type_name)
        return MISSING

    # ---- any -----------------------------------------------------------------------------------

    def to_any(self, node: Node) -> Any:
        """Into a Go interface{}: None, bool, int, float, str, GoTime, tuple, dict, AnyKeyMap."""
        if node.kind == SCALAR:
            tag, value = self.scalar(node)
            return MISSING if tag == gr.MERGE else value
        if node.kind == SEQUENCE:
            items = (self.construct(child, self.to_any) for child in node.children)
            return tuple(item for item in items if item is not MISSING)
        if not self.unique_keys(node):
            return MISSING
        if all(k.short_tag() in (gr.STR, gr.MERGE) for k in node.children[::2]):
            return self.fill_string_map(node, "map[string]interface {}")
        return self.any_key_map(node)

    def string_map(self, node: Node, type_name: str) -> Any:
        """Into a Go map[string]any (overlay options)."""
        if node.kind == SCALAR:
            tag, value = self.scalar(node)
            if value is None:
                return None
            if tag != gr.MERGE:
                self.type_error(node, tag, type_name)
            return MISSING
        if node.kind == SEQUENCE:
            self.type_error(node, gr.SEQ, type_name)
            return MISSING
        if not self.unique_keys(node):
            return MISSING
        return self.fill_string_map(node, type_name)

    def fill_string_map(self, node: Node, type_name: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged, self.merged = self.merged, None
        merge_node = None
        pairs = node.children
        for i in range(0, len(pairs), 2):
            key_node, value_node = pairs[i], pairs[i + 1]
            if _is_merge(key_node):
                merge_node = value_node
                continue
            key = self.construct(key_node, self.to_string)
            if key is MISSING:
                continue
            if merged is not None:
                if ("str", key) in merged:
                    continue
                merged.add(("str", key))
            value = self.construct(value_node, self.to_any)
            if value is not MISSING:
                result[key] = value
        self.merged = merged
        if merge_node is not None:
            self.merge(
                node,
                merge_node,
                lambda n: _merge_dict(
                    result, self.construct(n, lambda m: self.string_map(m, type_name))
                ),
            )
        return result

    def any_key_map(self, node: Node) -> AnyKeyMap:
        entries: dict[tuple[str, Any], tuple[Any, Any]] = {}
        merged, self.merged = self.merged, None
        merge_node = None
        pairs = node.children
        for i in range(0, len(pairs), 2):
            key_node, value_node = pairs[i], pairs[i + 1]
            if _is_merge(key_node):
                merge_node = value_node
                continue
            key = self.construct(key_node, self.to_any)
            if key is MISSING:
                continue
            if isinstance(key, (tuple, dict, AnyKeyMap)):
                raise self.fail(key_node, "cannot use a mapping or sequence as a map key")
            identity = _key_identity(key)
            if merged is not None:
                if identity in merged:
                    continue
                merged.add(identity)
            value = self.construct(value_node, self.to_any)
            if value is not MISSING:
                entries[identity] = (key, value)
        self.merged = merged
        if merge_node is not None:

            def merge_into(n: Node) -> None:
                extra = self.construct(n, self.to_any)
                if isinstance(extra, AnyKeyMap):
                    for k, v in extra.items:
                        entries.setdefault(_key_identity(k), (k, v))
                elif isinstance(extra, dict):
                    for k, v in extra.items():
                        entries.setdefault(_key_identity(k), (k, v))

            self.merge(node, merge_node, merge_into)
        return AnyKeyMap(tuple(entries.values()))

    # ---- mappings --------------------------------------------------------------------------------

    def unique_keys(self, node: Node) -> bool:
        """constructor.go mapping(): every pair of keys with equal kind and text is an error."""
        keys = node.children[::2]
        if len({(key.kind, key.value) for key in keys}) == len(keys):
            return True
        first: dict[tuple[str, str], list[Node]] = {}
        clashes: list[tuple[int, int, Node, Node]] = []
        for index, key in enumerate(keys):
            seen = first.setdefault((key.kind, key.value), [])
            clashes.extend((keys.index(prior), index, prior, key) for prior in seen)
            seen.append(key)
        for _, _, prior, key in sorted(clashes, key=lambda c: (c[0], c[1])):
            self.error(
                key, f"mapping key {go_quote(key.value)} already defined at line {prior.line}"
            )
        return not clashes

    def merge(self, parent: Node, merge_node: Node, apply: Callable[[Node], None]) -> None:
        """constructor.go merge(): parent keys win over merged ones."""
        outer = self.merged
        if outer is None:
            self.merged = set()
            for key_node in parent.children[::2]:
                key = self.construct(key_node, self.to_any)
                if key is not MISSING and not isinstance(key, (tuple, dict, AnyKeyMap)):
                    self.merged.add(_key_identity(key))
        target = merge_node.alias if merge_node.kind == ALIAS else merge_node
        if target is not None and target.kind == MAPPING:
            apply(merge_node)
        elif merge_node.kind == SEQUENCE:
            for item in merge_node.children:
                resolved = item.alias if item.kind == ALIAS else item
                if resolved is None or resolved.kind != MAPPING:
                    raise self.fail(item, "map merge requires map or sequence of maps as the value")
                apply(item)
        else:
            raise self.fail(merge_node, "map merge requires map or sequence of maps as the value")
        self.merged = outer


def _is_merge(node: Node) -> bool:
    return node.kind == SCALAR and node.short_tag() == gr.MERGE


def _merge_dict(into: dict[str, Any], extra: Any) -> None:
    if isinstance(extra, dict):
        for key, value in extra.items():
            into.setdefault(key, value)


# ---- plain data (configs) ------------------------------------------------------------------------

YamlPath = tuple[str | int, ...]
_RESOLVER: Any = yaml.resolver.Resolver()
_SAFE = yaml.constructor.SafeConstructor()


class _PlainLoader:
    """A composed document as plain Python data with YAML 1.1 scalars (PyYAML's safe_load), the
    line of every path, and the schematic's bounds on depth and on what aliases add."""

    def __init__(self, source: str, max_produced: int) -> None:
        self.source = source
        self.max_produced = max_produced
        self.produced = 0
        self.max_depth = limits().depth
        self.marks: dict[YamlPath, int] = {}
        self.expanding: set[int] = set()

    def fail(self, node: Node, message: str) -> InvalidInput:
        return _fail(self.source, node.line, message)

    def value(self, node: Node, path: YamlPath, aliased: bool) -> Any:
        if len(path) > self.max_depth:
            raise self.fail(node, f"nesting deeper than {self.max_depth} levels")
        if node.kind == ALIAS:
            target = node.alias
            if target is None or id(target) in self.expanding:
                raise self.fail(node, f"anchor '{node.value}' value contains itself")
            self.expanding.add(id(target))
            try:
                return self.value(target, path, True)
            finally:
                self.expanding.discard(id(target))
        self.marks.setdefault(path, node.line)
        if aliased:
            self.produced += 1 + len(node.value.encode("utf-8", "surrogateescape"))
            if self.produced > self.max_produced:
                raise self.fail(
                    node, f"aliases expand the document beyond {self.max_produced} bytes"
                )
        if node.kind == SCALAR:
            return self.scalar(node)
        if node.kind == SEQUENCE:
            return [self.value(item, (*path, i), aliased) for i, item in enumerate(node.children)]
        result: dict[str, Any] = {}
        pairs = node.children
        for i in range(0, len(pairs), 2):
            key_node = pairs[i].alias if pairs[i].kind == ALIAS else pairs[i]
            if key_node is None or key_node.kind != SCALAR:
                raise self.fail(
                    pairs[i], "a mapping key must be a scalar, not a mapping or sequence"
                )
            key = key_node.value
            if key in result:
                raise self.fail(pairs[i], f"duplicate key {go_quote(key)}")
            self.marks[(*path, key)] = pairs[i].line
            result[key] = self.value(pairs[i + 1], (*path, key), aliased)
        return result

    def scalar(self, node: Node) -> Any:
        if node.tag.startswith("!!"):
            tag = "tag:yaml.org,2002:" + node.tag[2:]
        elif node.tag:
            tag = node.tag
        else:
            implicit = (node.style == "", node.style != "")
            tag = _RESOLVER.resolve(yaml.ScalarNode, node.value, implicit)
        construct = yaml.constructor.SafeConstructor.yaml_constructors.get(tag)
        if construct is None or tag == "tag:yaml.org,2002:merge":
            raise self.fail(node, f"unknown tag {go_quote(node.tag or tag)}")
        scalar = yaml.ScalarNode(tag, node.value, style=node.style or None)
        try:
            return construct(_SAFE, scalar)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError) as exc:
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            kind = tag.rsplit(":", 1)[-1]
            raise self.fail(node, f"cannot read {go_quote(shown)} as {kind}: {exc}") from None


def load_plain(
    data: bytes, source: str, *, max_bytes: int, what: str
) -> tuple[Any, dict[YamlPath, int]]:
    """The first document of `data` as plain data with the line of each path (config files)."""
    root = compose_first_document(data, source, max_bytes=max_bytes, what=what)
    loader = _PlainLoader(source, max_bytes)
    return loader.value(root, (), False), loader.marks
