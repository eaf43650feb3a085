"""Deterministic image writing: layer tars from trees, configs, manifests and indexes.

Same trees and mtime in, same digests out: sorted entries, owner 0, fixed mtime, bare gzip header.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

from imagefactory.errors import InvalidInput
from imagefactory.oci import media
from imagefactory.oci.digest import CHUNK, HashingWriter
from imagefactory.oci.model import Descriptor, Platform, canonical_json, check_repository
from imagefactory.oci.target import Target

GZIP_LEVEL = 6
ARCH_RE = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class LayerFile:
    """One entry of a layer tar: content from `data` or from the file `source`."""

    path: str
    mode: int
    kind: Literal["file", "dir", "symlink"] = "file"
    data: bytes | None = None
    source: Path | None = None
    target: str = ""

    def __post_init__(self) -> None:
        parts = self.path.split("/")
        if not self.path or self.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InvalidInput(f"layer entry path must be relative and normalised: {self.path!r}")
        if not 0 <= self.mode <= 0o7777:
            raise InvalidInput(f"layer entry {self.path!r}: mode {self.mode:#o} out of range")
        if self.kind == "file" and (self.data is None) == (self.source is None):
            raise InvalidInput(f"layer entry {self.path!r}: give exactly one of data and source")
        if self.kind == "symlink" and not self.target:
            raise InvalidInput(f"layer entry {self.path!r}: a symlink needs a target")


def rfc3339(mtime: int) -> str:
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tree_entries(tree: Path) -> list[LayerFile]:
    """The entries of a directory tree, depth first, names sorted; hard links become plain files."""
    root = Path(tree)
    if not root.is_dir():
        raise InvalidInput(f"layer tree is not a directory: {root}")
    out: list[LayerFile] = []

    def walk(directory: Path, prefix: str) -> None:
        for name in sorted(os.listdir(directory)):
            path = directory / name
            rel = f"{prefix}{name}"
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out.append(LayerFile(rel, 0o777, "symlink", target=os.readlink(path)))
            elif stat.S_ISDIR(st.st_mode):
                out.append(LayerFile(rel, mode, "dir"))
                walk(path, rel + "/")
            elif stat.S_ISREG(st.st_mode):
                out.append(LayerFile(rel, mode, "file", source=path))
            else:
                raise InvalidInput(f"layer tree {root}: {rel} is not a file, directory or symlink")

    walk(root, "")
    return out


def _tarinfo(entry: LayerFile, mtime: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mode = entry.mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.type = tarfile.REGTYPE
        info.size = size
    return info


def _write_tar(entries: Sequence[LayerFile], sink: HashingWriter, mtime: int) -> None:
    with tarfile.open(
        fileobj=cast(IO[bytes], sink), mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK
    ) as tar:
        for entry in sorted(entries, key=lambda e: e.path.split("/")):
            if entry.kind != "file":
                tar.addfile(_tarinfo(entry, mtime, 0))
            elif entry.data is not None:
                tar.addfile(_tarinfo(entry, mtime, len(entry.data)), io.BytesIO(entry.data))
            else:
                assert entry.source is not None
                with entry.source.open("rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    tar.addfile(_tarinfo(entry, mtime, size), f)


def write_layer_entries(
    entries: Sequence[LayerFile], out: Path, *, compress: bool = True, mtime: int = 0
) -> tuple[Descriptor, str]:
    """Write a deterministic layer from declared entries; return (layer descriptor, diff_id)."""
    paths = [e.path for e in entries]
    if len(set(paths)) != len(paths):
        raise InvalidInput("layer entries repeat a path")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as raw:
            compressed = HashingWriter(raw)
            if compress:
                # filename="" and mtime=0 keep the gzip header free of anything run-specific.
                with gzip.GzipFile(
                    filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=GZIP_LEVEL
                ) as gz:
                    plain = HashingWriter(gz)
                    _write_tar(entries, plain, mtime)
            else:
                plain = compressed
                _write_tar(entries, plain, mtime)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    media_type = media.OCI_LAYER_GZIP if compress else media.OCI_LAYER_TAR
    return Descriptor(media_type, compressed.digest, compressed.size), plain.digest


def write_layer(
    tree: Path, out: Path, *, compress: bool = True, mtime: int = 0
) -> tuple[Descriptor, str]:
    """Write the tree as a deterministic layer (sorted, uid/gid 0, fixed mtime, PAX, gzip -6)."""
    return write_layer_entries(tree_entries(tree), out, compress=compress, mtime=mtime)


def image_config(
    arch: str, diff_ids: Sequence[str], extra: Mapping[str, Any] | None, mtime: int
) -> dict[str, Any]:
    created = rfc3339(mtime)
    return {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": dict(extra or {}),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": created, "created_by": "imagefactory"} for _ in diff_ids],
    }


def push_manifest_json(
    target: Target, repository: str, obj: Mapping[str, Any], tag: str | None = None
) -> Descriptor:
    """Push a manifest or index object as canonical JSON; its mediaType field names its type."""
    media_type = obj.get("mediaType")
    if not isinstance(media_type, str):
        raise InvalidInput("manifest object needs a string mediaType")
    return target.put_manifest(repository, canonical_json(obj), media_type, tag=tag)


def _layers(
    target: Target,
    repository: str,
    trees: Sequence[Path],
    workdir: Path,
    *,
    mtime: int,
    cache: dict[Path, tuple[Descriptor, str]],
) -> Iterator[tuple[Descriptor, str]]:
    for tree in trees:
        key = Path(tree).resolve()
        if key not in cache:
            out = workdir / f"layer-{len(cache)}.tar.gz"
            desc, diff_id = write_layer(key, out, mtime=mtime)
            target.push_blob(repository, out, desc.digest)
            out.unlink()
            cache[key] = (desc, diff_id)
        yield cache[key]


def push_image(
    target: Target,
    repository: str,
    tag: str | None,
    layers_by_arch: Mapping[str, Sequence[Path]],
    *,
    config: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    mtime: int = 0,
    index: bool | None = None,
) -> Descriptor:
    """Build and push one image manifest per arch, plus an OCI index when more than one arch
    (or when index=True); tag the top object and return its descriptor."""
    check_repository(repository)
    if not layers_by_arch:
        raise InvalidInput(f"{repository}: an image needs at least one architecture")
    for arch in layers_by_arch:
        if not ARCH_RE.match(arch):
            raise InvalidInput(f"{repository}: not an architecture name: {arch!r}")
    make_index = len(layers_by_arch) > 1 if index is None else index
    manifests: list[Descriptor] = []
    cache: dict[Path, tuple[Descriptor, str]] = {}
    with tempfile.TemporaryDirectory(prefix="imagefactory-layers-") as tmp:
        for arch, trees in layers_by_arch.items():
            layers = list(_layers(target, repository, trees, Path(tmp), mtime=mtime, cache=cache))
            cfg = canonical_json(image_config(arch, [d for _, d in layers], config, mtime))
            cfg_digest = target.push_blob_bytes(repository, cfg)
            manifest: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": media.OCI_MANIFEST,
                "config": Descriptor(media.OCI_CONFIG, cfg_digest, len(cfg)).to_json(),
                "layers": [desc.to_json() for desc, _ in layers],
            }
            if annotations and not make_index:
                manifest["annotations"] = dict(annotations)
            desc = push_manifest_json(target, repository, manifest, None if make_index else tag)
            manifests.append(
                Descriptor(desc.media_type, desc.digest, desc.size, Platform("linux", arch))
            )
    if not make_index:
        return manifests[0]
    top: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media.OCI_INDEX,
        "manifests": [m.to_json() for m in manifests],
    }
    if annotations:
        top["annotations"] = dict(annotations)
    return push_manifest_json(target, repository, top, tag)
