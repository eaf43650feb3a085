"""SBC overlays: ask the overlay's installer for its options (`get-options`), as Talos's imager does.

The installer is the overlay image's `installers/<name>`; its YAML answer carries kernel arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imagefactory import tools
from imagefactory.errors import BuildError, ToolError


@dataclass(frozen=True)
class OverlayOptions:
    name: str
    kernel_args: tuple[str, ...]
    partition_offset: int


def get_options(root: Path, name: str, extra_options: Mapping[str, Any]) -> OverlayOptions:
    """Run `installers/<name> get-options` with the schematic's options as YAML on stdin."""
    installer = root / "installers" / name
    if not installer.is_file():
        raise BuildError(f"overlay {name!r}: the overlay image has no installers/{name}")
    stdin = yaml.safe_dump(dict(extra_options), sort_keys=True).encode() if extra_options else b""
    try:
        answer = tools.run([installer, "get-options"], cwd=root, stdin=stdin, timeout=60)
    except ToolError as exc:
        raise BuildError(
            f"overlay {name!r}: get-options failed: {exc.stderr_tail.strip()}"
        ) from exc
    try:
        doc = yaml.safe_load(answer) or {}
    except yaml.YAMLError as exc:
        raise BuildError(f"overlay {name!r}: get-options printed no valid YAML: {exc}") from exc
    args = doc.get("kernelArgs") or [] if isinstance(doc, dict) else None
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise BuildError(f"overlay {name!r}: get-options: kernelArgs must be a list of strings")
    offset = (doc.get("partitionOptions") or {}).get("offset", 0)
    if not isinstance(offset, int):
        raise BuildError(f"overlay {name!r}: get-options: partitionOptions.offset must be a number")
    return OverlayOptions(str(doc.get("name", name)), tuple(args), offset)


def install(
    root: Path,
    name: str,
    extra_options: Mapping[str, Any],
    *,
    disk: Path,
    mount_prefix: Path,
) -> None:
    """Run `installers/<name> install` with {installDisk, mountPrefix, artifactsPath, extraOptions}.

    The installer writes its boot firmware into the raw disk at fixed offsets and copies files under
    `<mountPrefix>/boot/EFI/`, which becomes the EFI partition.
    """
    installer = root / "installers" / name
    if not installer.is_file():
        raise BuildError(f"overlay {name!r}: the overlay image has no installers/{name}")
    document = {
        "installDisk": str(disk),
        "mountPrefix": str(mount_prefix),
        "artifactsPath": str(root / "artifacts"),
        "extraOptions": dict(extra_options),
    }
    stdin = yaml.safe_dump(document, sort_keys=True).encode()
    try:
        tools.run([installer, "install"], cwd=root, stdin=stdin, timeout=600)
    except ToolError as exc:
        raise BuildError(f"overlay {name!r}: install failed: {exc.stderr_tail.strip()}") from exc


def profile_disk_size(root: Path, name: str) -> int | None:
    """`output.imageOptions.diskSize` of the overlay's profiles/<name>.yaml, if it sets one."""
    path = root / "profiles" / f"{name}.yaml"
    if not path.is_file():
        return None
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BuildError(f"overlay {name!r}: profiles/{name}.yaml is not YAML: {exc}") from exc
    size = ((doc.get("output") or {}).get("imageOptions") or {}).get("diskSize")
    if size is None:
        return None
    if not isinstance(size, int) or size <= 0:
        raise BuildError(
            f"overlay {name!r}: profiles/{name}.yaml diskSize must be a positive number"
        )
    return size
