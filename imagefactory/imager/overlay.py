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
