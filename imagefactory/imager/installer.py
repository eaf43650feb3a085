"""Installer images: the base installer's layers plus an assets layer, as docker-archive and OCI.

`build_installer` writes one arch's `installer-<arch>.tar` (upstream imager's outInstaller); both
arches as one OCI index, pushed and signed, are `imagefactory.installer_image`'s.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from imagefactory.errors import BuildError
from imagefactory.oci import media
from imagefactory.oci.build import LayerFile, rfc3339, tree_entries, write_layer_entries
from imagefactory.oci.dockerarchive import ArchiveLayer, write_docker_archive
from imagefactory.oci.model import canonical_json
from imagefactory.oci.pull import pull_image, unpack_image

if TYPE_CHECKING:
    from imagefactory.inputs import LockedSources
    from imagefactory.schematic import Overlay
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


def image_name(platform: str | None, secureboot: bool) -> str:
    """Upstream's registry image names: `installer` (metal) or `<platform>-installer`."""
    return f"{platform + '-' if platform else ''}installer{'-secureboot' if secureboot else ''}"


def asset_path(platform: str | None, arch: str, secureboot: bool) -> str:
    prefix = f"{platform}-" if platform else ""
    return f"{prefix}installer-{arch}{'-secureboot' if secureboot else ''}.tar"
