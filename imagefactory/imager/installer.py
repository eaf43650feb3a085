"""Installer images: the base installer's layers plus an assets layer, as docker-archive and OCI.

`build_installer` writes one arch's `installer-<arch>.tar` (upstream imager's outInstaller);
`installer_image` turns the per-arch tarballs into one OCI index, which `push_installer` pushes by
digest, signs (index and every platform manifest) and only then tags, and `write_v2_tree` lays out
for a static `/v2` tree.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from imagefactory.errors import BuildError, InvalidInput
from imagefactory.files import write_atomic
from imagefactory.oci import media
from imagefactory.oci.build import LayerFile, rfc3339, tree_entries, write_layer_entries
from imagefactory.oci.credentials import registry_credentials
from imagefactory.oci.digest import sha256_bytes
from imagefactory.oci.dockerarchive import ArchiveLayer, read_docker_archive, write_docker_archive
from imagefactory.oci.model import Descriptor, Platform, canonical_json
from imagefactory.oci.pull import pull_image, unpack_image
from imagefactory.oci.registry import RegistryTarget
from imagefactory.oci.target import Target
from imagefactory.platforms import get_platform
from imagefactory.signing.cosign import sign_image
from imagefactory.signing.keys import PrivateKey, load_private_key
from imagefactory.store import Store

if TYPE_CHECKING:
    from imagefactory.config import Config, PushRegistry
    from imagefactory.inputs import LockedSources
    from imagefactory.schematic import Overlay, Schematic
    from imagefactory.versions import TalosVersion

INSTALL_DIR = "usr/install"
# The same bytes under either name: the installer's own layer is written as OCI gzip.
GZIP_LAYER_TYPES = frozenset({media.OCI_LAYER_GZIP, media.DOCKER_LAYER_GZIP})


# -- one arch: the docker-archive tarball ------------------------------------------------------


@dataclass(frozen=True)
class BaseInstaller:
    """linux/<arch> of the locked base installer: its config and its layer blobs, fetched."""

    reference: str  # `<component>:<vtag>`, the tag the tarball carries as upstream's does
    config: Mapping[str, Any]
    layers: tuple[ArchiveLayer, ...]


def base_installer(sources: LockedSources, version: TalosVersion, arch: str) -> BaseInstaller:
    """Pull the lock's installer (installer-base from 1.10) for `arch`; blobs land in the store."""
    entry = sources.version_entry(version)["installer"]
    image = pull_image(sources.target, entry["repository"], entry["digest"], arch)
    layers = []
    for layer in image.layers:
        if layer.media_type not in GZIP_LAYER_TYPES:
            raise BuildError(f"{image.reference}: layer {layer.digest} is {layer.media_type}")
        path = sources.blobs.fetch(sources.target, entry["repository"], layer.digest)
        layers.append(ArchiveLayer(layer.digest, path))
    return BaseInstaller(f"{entry['component']}:{version.tag}", image.config, tuple(layers))


def assets_files(
    arch: str,
    *,
    uki: Path | None,
    sd_boot: Path | None,
    kernel: Path | None,
    initramfs: Path | None,
    signed_name: bool = False,
) -> list[LayerFile]:
    """usr/install/<arch>/: systemd-boot and the UKI (from 1.10, or Secure Boot), else the
    kernel and initramfs. Secure Boot installers below 1.10 name the UKI `vmlinuz.efi.signed`."""
    base = f"{INSTALL_DIR}/{arch}"
    if uki is not None:
        if sd_boot is None:
            raise BuildError("an installer with a UKI needs systemd-boot")
        name = "vmlinuz.efi.signed" if signed_name else "vmlinuz.efi"
        pairs = [("systemd-boot.efi", sd_boot), (name, uki)]
    else:
        if kernel is None or initramfs is None:
            raise BuildError("an installer without a UKI needs the kernel and the initramfs")
        pairs = [("vmlinuz", kernel), ("initramfs.xz", initramfs)]
    return [LayerFile(f"{base}/{name}", 0o644, source=path) for name, path in pairs]


def _kept_layers(base: BaseInstaller, two_layer_quirk: bool) -> int:
    # Installers below 1.10 carry their own assets in a second layer: keep the tools layer only.
    return 1 if two_layer_quirk and len(base.layers) == 2 else len(base.layers)


def _history(base: Mapping[str, Any], kept: int, created: str, added: int) -> list[dict[str, Any]]:
    history = base.get("history")
    out: list[dict[str, Any]] = []
    layers = 0
    for item in history if isinstance(history, list) else []:
        if not isinstance(item, dict):
            continue
        if not item.get("empty_layer"):
            if layers == kept:
                break
            layers += 1
        out.append(dict(item))
    out.extend({"created": created} for _ in range(kept - layers))
    out.extend({"created": created, "created_by": "imagefactory installer"} for _ in range(added))
    return out


def installer_config(
    base: BaseInstaller, kept: int, diff_ids: Sequence[str], arch: str, epoch: int
) -> bytes:
    """The base's config (entrypoint, env, labels) with this image's arch, layers and time."""
    base_ids = base.config.get("rootfs", {}).get("diff_ids")
    if not isinstance(base_ids, list) or len(base_ids) < kept:
        raise BuildError(f"{base.reference}: config lists fewer diff_ids than the image has layers")
    config: dict[str, Any] = copy.deepcopy(dict(base.config))
    created = rfc3339(epoch)
    config.update(
        {
            "architecture": arch,
            "os": "linux",
            "created": created,
            "rootfs": {"type": "layers", "diff_ids": [*base_ids[:kept], *diff_ids]},
            "history": _history(base.config, kept, created, len(diff_ids)),
        }
    )
    config.pop("variant", None)
    return canonical_json(config)


def overlay_files(
    sources: LockedSources, version: TalosVersion, arch: str, overlay: Overlay, work: Path
) -> list[LayerFile]:
    """The overlay layer: `overlay/artifacts/**`, `overlay/installers/default` (the schematic's
    installer) and `overlay/extra-options` (its options as YAML), from the arch's overlay image."""
    entry = sources.overlay_entry(version, overlay.name)
    image = pull_image(sources.target, entry["repository"], entry["digest"], arch)
    root = work / "overlay-image"
    unpack_image(sources.target, image, root, sources.blobs)
    installer = root / "installers" / overlay.name
    if not installer.is_file() or not (root / "artifacts").is_dir():
        raise BuildError(
            f"overlay {overlay.name!r}: the image lacks artifacts/ or installers/{overlay.name}"
        )
    files = [
        LayerFile(f"overlay/{e.path}", e.mode, e.kind, e.data, e.source, e.target)
        for e in tree_entries(root)
        if e.path == "artifacts" or e.path.startswith("artifacts/")
    ]
    options = (
        yaml.safe_dump(dict(overlay.options), sort_keys=True).encode() if overlay.options else b""
    )
    files += [
        LayerFile("overlay/installers/default", 0o755, source=installer),
        LayerFile("overlay/extra-options", 0o644, data=options),
    ]
    return files


def build_installer(
    out: Path,
    base: BaseInstaller,
    layers: Sequence[Sequence[LayerFile]],
    *,
    arch: str,
    epoch: int,
    two_layer_quirk: bool,
) -> None:
    """Write `installer-<arch>.tar`: the base's tools layer(s), then the assets layer (and the
    overlay's, if any)."""
    kept = _kept_layers(base, two_layer_quirk)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".installer-") as tmp:
        written, diff_ids = [], []
        for i, files in enumerate(layers):
            layer_path = Path(tmp) / f"layer-{i}.tar.gz"
            desc, diff_id = write_layer_entries(files, layer_path, mtime=epoch)
            written.append(ArchiveLayer(desc.digest, layer_path))
            diff_ids.append(diff_id)
        config = installer_config(base, kept, diff_ids, arch, epoch)
        write_docker_archive(out, config, [*base.layers[:kept], *written], [base.reference])


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


def image_name(platform: str | None, secureboot: bool) -> str:
    """Upstream's registry image names: `installer` (metal) or `<platform>-installer`."""
    return f"{platform + '-' if platform else ''}installer{'-secureboot' if secureboot else ''}"


def asset_path(platform: str | None, arch: str, secureboot: bool) -> str:
    prefix = f"{platform}-" if platform else ""
    return f"{prefix}installer-{arch}{'-secureboot' if secureboot else ''}.tar"


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
    from imagefactory.build import build_asset  # noqa: PLC0415
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
