"""Build inputs from the lock: the imager's boot assets and extension trees, unpacked once per digest.

Everything is fetched by the digest the lock pinned and verified; trees land under store/trees/.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory.catalogs import resolve_extension_name
from imagefactory.config import Config
from imagefactory.errors import BuildError, InvalidInput, NotFound
from imagefactory.imager.extensions import check_constraint, unavailable
from imagefactory.oci import open_target
from imagefactory.oci.pull import pull_image, unpack_image
from imagefactory.oci.target import Target
from imagefactory.sources import check_lock_source, read_lock
from imagefactory.store import Store, locked, scratch
from imagefactory.versions import TalosVersion

# The imager image carries every arch's assets whatever platform is pulled, as upstream's does.
IMAGER_PLATFORM = "amd64"


@dataclass(frozen=True)
class BootAssets:
    """usr/install/<arch>/ of the imager: vmlinuz, initramfs.xz, systemd-stub.efi, systemd-boot.efi."""

    root: Path
    epoch: int

    @property
    def kernel(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def initramfs(self) -> Path:
        return self.root / "initramfs.xz"

    @property
    def sd_stub(self) -> Path:
        return self.root / "systemd-stub.efi"

    @property
    def sd_boot(self) -> Path:
        return self.root / "systemd-boot.efi"


def epoch_of(config: Mapping[str, Any], what: str) -> int:
    """SOURCE_DATE_EPOCH from the image's `created` time: the release's own date."""
    created = config.get("created")
    if not isinstance(created, str):
        raise BuildError(f"{what}: image config has no `created` time")
    try:
        when = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BuildError(f"{what}: bad `created` time {created!r}") from exc
    return int(when.timestamp())


class LockedSources:
    """The lock's view of one Talos version, with trees fetched on first use."""

    def __init__(self, config: Config, *, target: Target | None = None) -> None:
        self.config = config
        self.lock = read_lock(config)
        check_lock_source(config, self.lock)
        src = config.sources
        self.target = target or open_target(
            src.registry, insecure=src.insecure, username=src.username, password=src.password()
        )
        self.blobs = Store(config.store / "blobs")
        self.trees = config.store / "trees"

    def version_entry(self, version: TalosVersion) -> dict[str, Any]:
        entry = self.lock["versions"].get(version.tag)
        if entry is None:
            raise NotFound(f"version {version} is not available")
        result: dict[str, Any] = entry
        return result

    def _tree(self, repository: str, digest: str, arch: str) -> tuple[Path, dict[str, Any]]:
        """Unpack an image once: temporary name, then rename; the config is kept beside it."""
        dest = self.trees / f"{digest.removeprefix('sha256:')}-{arch}"
        config_file = dest.with_suffix(".config.json")
        # A tree is renamed into place whole: one that exists is complete (a read-only store serves).
        if not dest.is_dir():
            with locked(dest):
                if not dest.is_dir():
                    image = pull_image(self.target, repository, digest, arch)
                    with scratch(self.trees, ".unpack-") as work:
                        unpack_image(self.target, image, work / "root", self.blobs)
                        (work / "config.json").write_text(
                            json.dumps({"created": image.config.get("created")})
                        )
                        os.replace(work / "config.json", config_file)
                        os.replace(work / "root", dest)
        loaded: dict[str, Any] = json.loads(config_file.read_text())
        return dest, loaded

    def boot_assets(self, version: TalosVersion, arch: str) -> BootAssets:
        imager = self.version_entry(version)["imager"]
        root, config = self._tree(imager["repository"], imager["digest"], IMAGER_PLATFORM)
        assets = BootAssets(root / "usr" / "install" / arch, epoch_of(config, imager["repository"]))
        for path in (assets.kernel, assets.initramfs):
            if not path.is_file():
                raise BuildError(
                    f"{imager['repository']}@{imager['digest']}: no {path.name} for {arch}"
                )
        return assets

    def locked_extension(self, version: TalosVersion, name: str) -> dict[str, Any]:
        """A schematic's extension name (or its upstream alias) -> its lock entry."""
        locked_exts = self.version_entry(version)["extensions"]
        entry = locked_exts.get(name) or locked_exts.get(resolve_extension_name(name))
        if entry is None:
            raise unavailable(name, version)
        result: dict[str, Any] = entry
        return result

    def extension_digests(self, version: TalosVersion, names: tuple[str, ...]) -> dict[str, str]:
        """Schematic names -> locked digests, each compatible with the version, before any fetch."""
        found = {}
        for name in names:
            entry = self.locked_extension(version, name)
            check_constraint(entry["manifestName"], entry["talosVersion"], version)
            found[name] = entry["digest"]
        return found

    def overlay_entry(self, version: TalosVersion, name: str) -> dict[str, Any]:
        entry = self.version_entry(version)["overlays"].get(name)
        if entry is None:
            raise InvalidInput(
                f'official overlay "{name}" is not available for Talos version {version.tag}'
            )
        result: dict[str, Any] = entry
        return result

    def overlay_tree(self, entry: Mapping[str, Any]) -> Path:
        """The overlay image for the build host: its installers run here, as upstream's do."""
        root, _ = self._tree(entry["repository"], entry["digest"], IMAGER_PLATFORM)
        return root

    def extension_trees(
        self, version: TalosVersion, names: tuple[str, ...], arch: str
    ) -> dict[str, Path]:
        """name -> unpacked extension root (manifest.yaml + rootfs/) for that arch."""
        trees = {}
        for name in names:
            entry = self.locked_extension(version, name)
            trees[name], _ = self._tree(entry["repository"], entry["digest"], arch)
        return trees
