"""docker-archive tarballs (what `docker load` reads), laid out as go-containerregistry writes them.

Members: the config as `sha256:<hex>`, each compressed layer as `<hex>.tar.gz`, then manifest.json.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from imagefactory.errors import InvalidInput
from imagefactory.oci.digest import CHUNK, DIGEST_RE, add_verified, sha256_bytes
from imagefactory.oci.model import parse_manifest

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class ArchiveLayer:
    """A compressed layer blob on disk and its digest (the member is named by that digest)."""

    digest: str
    path: Path

    @property
    def member(self) -> str:
        return f"{self.digest.removeprefix('sha256:')}.tar.gz"


def _info(name: str, size: int) -> tarfile.TarInfo:
    # go's archive/tar with only name, size, mode and type set: mtime 0, no owner names.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_docker_archive(
    out: Path, config: bytes, layers: Sequence[ArchiveLayer], repo_tags: Sequence[str]
) -> None:
    """Write the archive to a temporary name beside `out`, then rename it into place."""
    config_name = sha256_bytes(config)
    members = [layer.member for layer in layers]
    manifest = [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": members}]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w|", format=tarfile.USTAR_FORMAT, bufsize=CHUNK) as tar,
        ):
            tar.addfile(_info(config_name, len(config)), io.BytesIO(config))
            written: set[str] = set()
            for layer in layers:
                if layer.member in written:
                    continue  # a layer repeated in one image is stored once, as go does
                written.add(layer.member)
                with layer.path.open("rb") as f:
                    tar.addfile(_info(layer.member, os.fstat(f.fileno()).st_size), f)
            data = json.dumps(manifest, separators=(",", ":")).encode()
            tar.addfile(_info(MANIFEST, len(data)), io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


@dataclass(frozen=True)
class ArchiveImage:
    """One image read back from a docker-archive: config bytes, layer digests, tags."""

    config: bytes
    layers: tuple[str, ...]
    repo_tags: tuple[str, ...]


def read_docker_archive(path: Path, blobs: Path) -> ArchiveImage:
    """Read the single image of a docker-archive; its layers land verified in `blobs/<hex>`.

    Layer members are named by their digest, so each is checked while it is copied out.
    """
    what = f"docker-archive {path}"
    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as exc:
        raise InvalidInput(f"{what}: not a tar archive: {exc}") from None
    with tar:
        members = {m.name: m for m in tar.getmembers() if m.isreg()}
        if MANIFEST not in members or members[MANIFEST].size > MAX_MANIFEST_BYTES:
            raise InvalidInput(f"{what}: no {MANIFEST}")
        listing = json.loads(_member_bytes(tar, members[MANIFEST]))
        if not isinstance(listing, list) or len(listing) != 1 or not isinstance(listing[0], dict):
            raise InvalidInput(f"{what}: {MANIFEST} must list exactly one image")
        entry = listing[0]
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or config_name not in members:
            raise InvalidInput(f"{what}: config {config_name!r} is missing")
        if not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
            raise InvalidInput(f"{what}: Layers must be a list of member names")
        config = _member_bytes(tar, members[config_name])
        if DIGEST_RE.match(config_name) and sha256_bytes(config) != config_name:
            raise InvalidInput(f"{what}: config does not match its name {config_name}")
        parse_manifest(config, f"{what}: config")
        digests = []
        for name in layer_names:
            hex_digest = name.removesuffix(".tar.gz")
            digest = f"sha256:{hex_digest}"
            if name not in members or not DIGEST_RE.match(digest):
                raise InvalidInput(f"{what}: layer member {name!r} is missing or not digest-named")
            if not (blobs / hex_digest).is_file():
                source = tar.extractfile(members[name])
                assert source is not None
                add_verified(_chunks(source), blobs, digest, what)
            digests.append(digest)
        tags = entry.get("RepoTags") or []
        return ArchiveImage(config, tuple(digests), tuple(str(t) for t in tags))


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise InvalidInput(f"{member.name}: not a regular file")
    return handle.read()


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk
