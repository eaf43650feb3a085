"""Installer images of both arches: one OCI index over the per-arch tarballs `imagefactory build` makes.

`installer_image` builds (or reuses) each arch's tarball and indexes them; `push_installer` pushes by
digest, signs (index and every platform manifest) and only then tags; `write_v2_tree` lays the image
out for a static `/v2` tree. Above build.py: it asks the build for the tarballs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagefactory.build import build_asset
from imagefactory.errors import InvalidInput
from imagefactory.files import write_atomic
from imagefactory.imager.installer import asset_path, image_name
from imagefactory.oci import media
from imagefactory.oci.credentials import registry_credentials
from imagefactory.oci.digest import sha256_bytes
from imagefactory.oci.dockerarchive import read_docker_archive
from imagefactory.oci.model import Descriptor, Platform, canonical_json
from imagefactory.oci.registry import RegistryTarget
from imagefactory.oci.target import Target
from imagefactory.platforms import get_platform
from imagefactory.signing.cosign import sign_image
from imagefactory.signing.keys import PrivateKey, load_private_key
from imagefactory.store import Store

if TYPE_CHECKING:
    from imagefactory.config import Config, PushRegistry
    from imagefactory.inputs import LockedSources
    from imagefactory.schematic import Schematic
    from imagefactory.versions import TalosVersion


# -- both arches: the OCI image ----------------------------------------------------------------


@dataclass(frozen=True)
class PlatformManifest:
    arch: str
    manifest: bytes

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(
            media.OCI_MANIFEST,
            sha256_bytes(self.manifest),
            len(self.manifest),
            Platform("linux", self.arch),
        )


@dataclass(frozen=True)
class InstallerImage:
    """An OCI index of per-arch installer images; every blob is a file in the store.

    `index` and each `manifests[i].manifest` are the exact bytes to serve or push.
    """

    name: str  # installer, installer-secureboot, <platform>-installer[-secureboot]
    index: bytes
    manifests: tuple[PlatformManifest, ...]
    blobs: Mapping[str, Path]  # digest -> file (configs and layers)

    @property
    def digest(self) -> str:
        return sha256_bytes(self.index)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(media.OCI_INDEX, self.digest, len(self.index))

    def push_untagged(self, target: Target, repository: str) -> Descriptor:
        """Blobs, then platform manifests, then the index, all by digest: no tag moves."""
        for digest, path in sorted(self.blobs.items()):
            target.push_blob(repository, path, digest)
        for platform in self.manifests:
            target.put_manifest(repository, platform.manifest, media.OCI_MANIFEST)
        return target.put_manifest(repository, self.index, media.OCI_INDEX)


def _platform_manifest(archive: Path, store: Store, arch: str) -> PlatformManifest:
    image = read_docker_archive(archive, store.blobs)
    config_digest = sha256_bytes(image.config)
    if not store.has(config_digest):
        store.add_bytes(image.config)
    layers = [
        Descriptor(media.OCI_LAYER_GZIP, digest, store.path(digest).stat().st_size).to_json()
        for digest in image.layers
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": Descriptor(media.OCI_CONFIG, config_digest, len(image.config)).to_json(),
        "layers": layers,
    }
    return PlatformManifest(arch, canonical_json(manifest))


def installer_image(
    config: Config,
    schematic: Schematic,
    version: TalosVersion,
    *,
    platform: str | None = None,
    secureboot: bool = False,
    sources: LockedSources | None = None,
) -> InstallerImage:
    """Build (or reuse) the installer tarball of every arch the platform has and index them."""
    # build.py's installer builder imports this module: import the other way round at call time.
    from imagefactory.inputs import LockedSources  # noqa: PLC0415

    sources = sources or LockedSources(config)
    row = get_platform(platform or "metal")
    store = sources.blobs
    manifests = []
    for arch in row.archs:
        path = asset_path(row.name if platform else None, arch, secureboot)
        archive = build_asset(config, schematic, version, path, sources=sources)
        manifests.append(_platform_manifest(archive, store, str(arch)))
    index = {
        "schemaVersion": 2,
        "mediaType": media.OCI_INDEX,
        "manifests": [m.descriptor.to_json() for m in manifests],
    }
    blobs: dict[str, Path] = {}
    for m in manifests:
        obj = json.loads(m.manifest)
        for desc in (obj["config"], *obj["layers"]):
            blobs[desc["digest"]] = store.path(desc["digest"])
    name = image_name(row.name if platform else None, secureboot)
    return InstallerImage(name, canonical_json(index), tuple(manifests), blobs)


# -- where the image goes: a registry (signed, then tagged), or a static v2 tree -------------


@dataclass(frozen=True)
class PushedInstaller:
    reference: str  # host/repository:vtag@digest
    repository: str
    tag: str
    digest: str
    signed: tuple[str, ...]  # digests signed, the index first


def push_installer(
    config: Config,
    schematic: Schematic,
    version: TalosVersion,
    *,
    platform: str | None = None,
    secureboot: bool = False,
    registry: PushRegistry | None = None,
    key: PrivateKey | None = None,
    target: Target | None = None,
    sources: LockedSources | None = None,
) -> PushedInstaller:
    """Push the installer index by digest, sign it and each platform manifest, then tag it.

    The tag is the last write: a client that finds it finds signatures too. `registry` and
    `key` default to the config's `registry:` section (the key, else `publish.signingKeyPath`);
    `target` overrides the connection.
    """
    registry = registry or config.registry
    if registry is None:
        raise InvalidInput(
            "no registry to push to: give --registry or set registry.url in the config"
        )
    if key is None:
        key_path = registry.signing_key or config.publish.signing_key
        if key_path is None:
            raise InvalidInput(
                "installer images are signed: set registry.signing.keyPath"
                " (or publish.signingKeyPath)"
            )
        key = load_private_key(key_path)
    get_platform(platform or "metal")  # an unknown platform is refused before any build
    image = installer_image(
        config, schematic, version, platform=platform, secureboot=secureboot, sources=sources
    )
    repository = registry.repository(f"{image.name}/{schematic.id}")
    own = target is None
    if target is None:
        username, password = registry.username, registry.password()
        if username is None:
            username, password = registry_credentials(registry.host) or (None, None)
        target = RegistryTarget(
            registry.host, insecure=registry.insecure, username=username, password=password
        )
    try:
        descriptor = image.push_untagged(target, repository)
        signed = sign_image(target, repository, descriptor, key, f"{registry.host}/{repository}")
        tag = version.tag
        target.put_manifest(repository, image.index, media.OCI_INDEX, tag=tag)
    finally:
        if own and isinstance(target, RegistryTarget):
            target.close()
    return PushedInstaller(
        reference=f"{registry.host}/{repository}:{tag}@{descriptor.digest}",
        repository=repository,
        tag=tag,
        digest=descriptor.digest,
        signed=tuple(d.digest for d in signed),
    )


def write_v2_tree(image: InstallerImage, root: Path, schematic_id: str, tag: str) -> Path:
    """Lay the image out as `root/v2/<name>/<id>/{manifests/<digest|tag>,blobs/<digest>}`.

    Blobs are hard links into the store where possible; the tag file is written last.
    """
    base = root / "v2" / image.name / schematic_id
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    (base / "manifests").mkdir(parents=True, exist_ok=True)
    for digest, path in sorted(image.blobs.items()):
        dest = base / "blobs" / digest
        if not dest.exists():
            _link_or_copy(path, dest)
    for data in (*(m.manifest for m in image.manifests), image.index):
        write_atomic(base / "manifests" / sha256_bytes(data), data)
    write_atomic(base / "manifests" / tag, image.index)
    return base


def _link_or_copy(source: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)
