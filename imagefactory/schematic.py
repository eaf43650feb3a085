"""Schematic model: upstream's fields, in upstream's serialization order, as frozen dataclasses.

Parsing (strict, YAML or JSON) and the Go-compatible canonical form live beside the model.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Bootloader(enum.StrEnum):
    DUAL_BOOT = "dual-boot"
    SD_BOOT = "sd-boot"
    GRUB = "grub"


@dataclass(frozen=True)
class MetaValue:
    key: int
    value: str


@dataclass(frozen=True)
class Overlay:
    image: str = ""
    name: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SecureBoot:
    enroll_keys: str = ""
    include_well_known_certificates: bool = False


@dataclass(frozen=True)
class DiskImage:
    sector_size: int = 0


@dataclass(frozen=True)
class Customization:
    embedded_machine_configuration: str = ""
    extra_kernel_args: tuple[str, ...] = ()
    meta: tuple[MetaValue, ...] = ()
    official_extensions: tuple[str, ...] = ()
    bootloader: Bootloader | None = None
    secureboot: SecureBoot = field(default_factory=SecureBoot)
    disk_image: DiskImage = field(default_factory=DiskImage)


@dataclass(frozen=True)
class Schematic:
    owner: str = ""
    overlay: Overlay = field(default_factory=Overlay)
    customization: Customization = field(default_factory=Customization)
