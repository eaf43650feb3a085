"""Helpers for tests that build assets from the sample release."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

BOOT_SCHEMATIC = """\
customization:
  extraKernelArgs:
    - console=ttyS0
    - talos.marker=factory-test
  meta:
    - key: 0xa
      value: '{"externalIPs":["1.2.3.4"]}'
  systemExtensions:
    officialExtensions:
      - siderolabs/intel-ucode
      - siderolabs/iscsi-tools
"""


def private_config(sample_config: Path, where: Path, **overrides: object) -> Path:
    """A copy of the sample config with its own store (and any other top-level keys replaced)."""
    where.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(sample_config.read_text())
    config["store"] = str(where / "store")
    config.update(overrides)
    path = where / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    shutil.copyfile(sample_config.parent / "sources.lock.json", where / "sources.lock.json")
    return path


def write_schematic(where: Path, text: str = BOOT_SCHEMATIC) -> Path:
    path = where / "schematic.yaml"
    path.write_text(text)
    return path
