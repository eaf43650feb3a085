"""Virtual extensions written as trees: `schematic` (image-factory) and `embedded-config` (imager).

Field values, file paths and modes follow upstream's tarballs; extension order is official, then these.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from imagefactory.errors import InvalidInput
from imagefactory.imager.extensions import (
    MANIFEST,
    ROOTFS,
    ExtensionTree,
    Manifest,
    Metadata,
    load_extension,
)
from imagefactory.quirks import quirks_for
from imagefactory.schematic import Schematic
from imagefactory.versions import TalosVersion

SCHEMATIC_NAME = "schematic"
EMBEDDED_CONFIG_NAME = "embedded-config"
DEFAULT_EXTERNAL_URL = "https://localhost/"  # image-factory's http.externalURL default
IMAGE_FACTORY_NAME = "Image Factory"
ANY_TALOS = ">= 1.0.0"
SCHEMATIC_DIR = "usr/local/share/schematic"
EMBEDDED_CONFIG_PATH = "usr/local/etc/talos/config.yaml"
STATE_SELINUX_LABEL = "system_u:object_r:system_state_t:s0"


def _write_tree(dest: Path, manifest: Manifest, path: str, data: bytes, mode: int) -> None:
    """manifest.yaml (0644), each directory down to `path` (0755), then the file with `mode`."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise InvalidInput(f"virtual extension directory {dest} is not empty")
    manifest_path = dest / MANIFEST
    manifest_path.write_bytes(manifest.to_yaml())
    os.chmod(manifest_path, 0o644)
    directory = dest
    for part in (ROOTFS, *Path(path).parent.parts):
        directory = directory / part
        directory.mkdir(exist_ok=True)
        os.chmod(directory, 0o755)
    target = dest / ROOTFS / path
    target.write_bytes(data)
    os.chmod(target, mode)


def schematic_extension(
    schematic: Schematic,
    version: TalosVersion,
    dest: Path,
    *,
    external_url: str = DEFAULT_EXTERNAL_URL,
) -> ExtensionTree:
    """The `schematic` extension: version = ID, empty marker file, canonical YAML from 1.7."""
    schematic_id = schematic.id
    metadata = Metadata(
        name=SCHEMATIC_NAME,
        version=schematic_id,
        author=f"{IMAGE_FACTORY_NAME} ({external_url})",
        # Upstream builds this sentence from the extension's name, hence "built with schematic".
        description=(
            "Virtual extension which specifies the schematic of the image built with "
            f"{SCHEMATIC_NAME}."
        ),
        talos_version=ANY_TALOS,
        # image-factory adds the schematic only where the version supports overlays (1.7+).
        extra_info=(
            schematic.canonical_bytes.decode("utf-8", "surrogateescape")
            if quirks_for(version).overlays
            else ""
        ),
    )
    _write_tree(dest, Manifest(metadata), f"{SCHEMATIC_DIR}/{schematic_id}", b"", 0o644)
    return load_extension(dest)


def embedded_config_extension(config: bytes, dest: Path) -> ExtensionTree:
    """The imager's `embedded-config` extension: version = sha256 of the config, file mode 0400."""
    metadata = Metadata(
        name=EMBEDDED_CONFIG_NAME,
        version=hashlib.sha256(config).hexdigest(),
        author="Imager",
        description="Virtual extension which embeds the machine configuration.",
        talos_version=ANY_TALOS,
    )
    _write_tree(dest, Manifest(metadata), EMBEDDED_CONFIG_PATH, config, 0o400)
    return load_extension(dest, selinux={EMBEDDED_CONFIG_PATH: STATE_SELINUX_LABEL})


def virtual_extensions(
    schematic: Schematic,
    version: TalosVersion,
    work: Path,
    *,
    external_url: str = DEFAULT_EXTERNAL_URL,
) -> tuple[ExtensionTree, ...]:
    """What goes after the official extensions: `schematic`, then `embedded-config` if any.

    Raises InvalidInput (upstream's message) for an embedded config on a version without support.
    """
    config = schematic.customization.embedded_machine_configuration
    if config and not quirks_for(version).embedded_config:
        raise InvalidInput(
            f"embedding configuration is not supported for Talos version {version.tag}"
        )
    trees = [
        schematic_extension(schematic, version, work / SCHEMATIC_NAME, external_url=external_url)
    ]
    if config:
        data = config.encode("utf-8", "surrogateescape")
        trees.append(embedded_config_extension(data, work / EMBEDDED_CONFIG_NAME))
    return tuple(trees)
