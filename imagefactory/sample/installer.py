"""Layer trees of the sample installer images, shaped per version like upstream's.

Below 1.10 `siderolabs/installer` has a tools layer and an assets layer; from 1.10
`siderolabs/installer-base` (the unified installer) has the tools layer only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imagefactory.platforms import Arch
from imagefactory.sample import tree
from imagefactory.sample.debian import DebianParts
from imagefactory.sample.imager import ArchAssets, install_entries, tools_entries
from imagefactory.sample.versions import SampleVersion


def tools_layer(version: SampleVersion, parts: DebianParts, work: Path) -> Path:
    """The tools tree of one arch (shared with the imager image: same path, same digest)."""
    return tree.materialize(
        tools_entries(version, parts), work / f"tools-{parts.arch}", version.source_date_epoch
    )


def installer_layers(
    version: SampleVersion,
    parts: Mapping[Arch, DebianParts],
    assets: Mapping[Arch, ArchAssets],
    work: Path,
) -> dict[str, list[Path]]:
    """Layer trees per platform for `version.installer_repository`."""
    epoch = version.source_date_epoch
    layers: dict[str, list[Path]] = {}
    for arch in sorted(parts):
        tools = work / f"tools-{arch}"
        if not tools.is_dir():
            tools = tools_layer(version, parts[arch], work)
        layers[str(arch)] = [tools]
        if not version.quirks.unified_installer:
            entries = install_entries(assets[arch], uefi=False)
            layers[str(arch)].append(
                tree.materialize(entries, work / f"installer-assets-{arch}", epoch)
            )
    return layers
