"""System extension trees: load and check `manifest.yaml` + `rootfs/`, resolve schematic names.

Mirrors upstream's extension loader and constraint validator; all checks run before any build work.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from imagefactory.catalogs import resolve_extension_name
from imagefactory.errors import InvalidInput
from imagefactory.gotext import go_quote
from imagefactory.goyaml import GoStruct, marshal
from imagefactory.imager.constraint import satisfies
from imagefactory.versions import TalosVersion

MANIFEST = "manifest.yaml"
ROOTFS = "rootfs"
MANIFEST_VERSION = "v1alpha1"
MAX_MANIFEST_BYTES = 1 << 20
_METADATA_FIELDS = ("name", "version", "author", "description", "extraInfo")
MAX_SYMLINK_HOPS = 40  # Linux's MAXSYMLINKS


@dataclass(frozen=True)
class Metadata:
    """Upstream extensions.Metadata, field for field (the layer metadata in extensions.yaml)."""

    name: str
    version: str
    author: str = ""
    description: str = ""
    talos_version: str = ""  # compatibility.talos.version, a blang/semver range
    extra_info: str = ""

    def to_go(self) -> GoStruct:
        fields: list[tuple[str, Any]] = [
            ("name", self.name),
            ("version", self.version),
            ("author", self.author),
            ("description", self.description),
            (
                "compatibility",
                GoStruct((("talos", GoStruct((("version", self.talos_version),))),)),
            ),
        ]
        if self.extra_info:  # omitempty
            fields.append(("extraInfo", self.extra_info))
        return GoStruct(tuple(fields))


@dataclass(frozen=True)
class Manifest:
    metadata: Metadata
    version: str = MANIFEST_VERSION

    def to_yaml(self) -> bytes:
        """Go yaml.Marshal of upstream's Manifest struct (4-space indent, literal blocks)."""
        return marshal(GoStruct((("version", self.version), ("metadata", self.metadata.to_go()))))


@dataclass(frozen=True)
class ExtensionTree:
    """An unpacked extension: `root/manifest.yaml` and the tree under `rootfs`.

    `selinux` maps rootfs-relative paths to SELinux labels carried by the image's tar headers.
    """

    root: Path
    manifest: Manifest
    rootfs: Path
    selinux: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def name(self) -> str:
        return self.manifest.metadata.name


def _string(value: Any, where: str) -> str:
    # Go's decoder turns any YAML scalar into a string field; maps and lists are errors.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise InvalidInput(f"{where}: expected a string, got {type(value).__name__}")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: expected a mapping")
    return value


def parse_manifest(data: bytes, *, source: str) -> Manifest:
    """Read manifest.yaml as upstream does: unknown fields ignored, version must be v1alpha1."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidInput(f"{source}: manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        loaded = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: not valid YAML: {exc}") from exc
    if loaded is None:
        raise InvalidInput(f"{source}: extension manifest is missing")
    top = _mapping(loaded, source)
    version = _string(top.get("version"), f"{source}: version")
    meta = _mapping(top.get("metadata"), f"{source}: metadata")
    values = {key: _string(meta.get(key), f"{source}: metadata.{key}") for key in _METADATA_FIELDS}
    compat = _mapping(meta.get("compatibility"), f"{source}: metadata.compatibility")
    talos = _mapping(compat.get("talos"), f"{source}: metadata.compatibility.talos")
    constraint = _string(talos.get("version"), f"{source}: metadata.compatibility.talos.version")
    metadata = Metadata(
        name=values["name"],
        version=values["version"],
        author=values["author"],
        description=values["description"],
        talos_version=constraint,
        extra_info=values["extraInfo"],
    )
    if version != MANIFEST_VERSION:
        raise InvalidInput(f"{source}: unsupported manifest version: {version!r}")
    if not metadata.name:
        raise InvalidInput(f"{source}: metadata.name is empty")
    return Manifest(metadata=metadata, version=version)


def load_extension(root: Path, selinux: Mapping[str, str] | None = None) -> ExtensionTree:
    """Load an unpacked extension; nothing but manifest.yaml and rootfs/ may sit at its root."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidInput(f"extension {root}: not a directory")
    names = sorted(p.name for p in root.iterdir())
    for name in names:
        if name not in (MANIFEST, ROOTFS):
            raise InvalidInput(f"extension {root}: unexpected file {name!r}")
    if MANIFEST not in names:
        raise InvalidInput(f"extension {root}: extension manifest is missing")
    rootfs = root / ROOTFS
    if not rootfs.is_dir() or rootfs.is_symlink():
        raise InvalidInput(f"extension {root}: extension rootfs is missing")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise InvalidInput(f"extension {root}: {MANIFEST} is not a regular file")
    manifest = parse_manifest(manifest_path.read_bytes(), source=str(manifest_path))
    return ExtensionTree(
        root=root,
        manifest=manifest,
        rootfs=rootfs,
        selinux=MappingProxyType(dict(selinux or {})),
    )


def resolve_in_rootfs(name: str, rootfs: Path, path: str) -> str | None:
    """`path` with every symlink resolved as if `rootfs` were `/`: rootfs-relative, or None if missing.

    Absolute targets restart at rootfs, so the build host's files are never reached; a link that
    climbs above rootfs or loops is bad input of extension `name`.
    """
    pending = [part for part in reversed(path.split("/")) if part not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise InvalidInput(f"extension {name!r}: {path}: symlink leaves the rootfs")
            resolved.pop()
            continue
        candidate = rootfs.joinpath(*resolved, part)
        try:
            mode = os.lstat(candidate).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(mode):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise InvalidInput(f"extension {name!r}: {path}: symlink loop")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending.extend(reversed(target.split("/")))
            continue
        if pending and not stat.S_ISDIR(mode):
            return None
        resolved.append(part)
    return "/".join(resolved)


def check_constraint(name: str, constraint: str, version: TalosVersion) -> None:
    """Upstream's constraint check against the release (pre-release dropped)."""
    try:
        ok = satisfies(constraint, version)
    except InvalidInput as exc:
        raise InvalidInput(f"error validating extension {go_quote(name)}: {exc}") from exc
    if not ok:
        raise InvalidInput(
            f"error validating extension {go_quote(name)}: version constraint {constraint} "
            f"can't be satisfied with Talos version {version}"
        )


def check_compatible(extension: ExtensionTree, version: TalosVersion) -> None:
    check_constraint(extension.name, extension.manifest.metadata.talos_version, version)


def unavailable(name: str, version: TalosVersion) -> InvalidInput:
    return InvalidInput(
        f"official extension {go_quote(name)} is not available for Talos version {version.tag}"
    )


def resolve_extensions(
    names: Sequence[str], catalog: Mapping[str, Path], version: TalosVersion
) -> tuple[ExtensionTree, ...]:
    """Schematic extension names -> loaded, compatible trees, in schematic order.

    A name is looked up as written, then through upstream's rename table, as image-factory does.
    """
    trees = []
    for name in names:
        path = catalog.get(name)
        if path is None:
            path = catalog.get(resolve_extension_name(name))
        if path is None:
            raise unavailable(name, version)
        trees.append(load_extension(path))
    for tree in trees:
        check_compatible(tree, version)
    return tuple(trees)
