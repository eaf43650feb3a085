"""The pipeline's planner: which (schematic, version) cells are missing or stale in the published tree.

A cell's key hashes everything its files are made from (the schematic's ID, the lock entries it uses,
its target list, the factory's build format, the external URL, the signing keys); a cell whose key the
current generation already carries is left alone, so Snakemake only ever sees stale cells.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagefactory import __version__, tree
from imagefactory.catalogs import resolve_extension_name
from imagefactory.config import Config, TargetRow, load_config
from imagefactory.errors import InvalidInput
from imagefactory.platforms import BootMethod, Platform, get_platform, platform_names
from imagefactory.quirks import quirks_for
from imagefactory.schematic import Schematic
from imagefactory.schematic_dir import SchematicDir, scan
from imagefactory.versions import TalosVersion

# Bump when the planner, the sidecars or the tree layout change what a cell publishes.
PLAN_FORMAT = 2
# The default set: every kind; a platform keeps those its boot methods offer.
DEFAULT_KINDS = ("kernel", "initramfs", "cmdline", "uki", "iso", "disk", "installer", "pxe")
# Kinds that have a -secureboot variant (the Secure Boot PXE script boots the UKI).
SECUREBOOT_KINDS = frozenset({"cmdline", "uki", "iso", "disk", "installer", "pxe"})


@dataclass(frozen=True, order=True)
class Target:
    """One file a cell publishes: its kind (the rule that makes it), name and tree path.

    `asset` is the upstream asset path built for it (for a PXE script: its cmdline asset).
    """

    kind: str
    name: str
    asset: str
    path: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "asset": self.asset, "path": self.path}


def _kind_asset(kind: str, platform: Platform, arch: str, sb: str, version: TalosVersion) -> str:
    """The upstream asset path of one kind: the table a new kind joins as one more row."""
    name = platform.name
    match kind:
        case "kernel":
            return f"kernel-{arch}"
        case "initramfs":
            return f"initramfs-{arch}.xz"
        case "cmdline" | "pxe":
            return f"cmdline-{name}-{arch}{sb}"
        case "uki":
            return f"{name}-{arch}{sb}-uki.efi"
        case "iso":
            return f"{name}-{arch}{sb}.iso"
        case "disk":
            return platform.disk_image_path(
                arch, platform.default_disk_image_suffix(version), secureboot=bool(sb)
            )
        case "installer":
            return f"installer-{arch}{sb}.tar"
    raise InvalidInput(f"unknown asset kind {kind!r}")


def _offered(kind: str, platform: Platform) -> bool:
    methods = platform.boot_methods
    if kind in {"kernel", "initramfs", "cmdline", "uki", "pxe"}:
        return BootMethod.PXE in methods
    if kind == "iso":
        return BootMethod.ISO in methods
    if kind == "disk":
        return BootMethod.DISK_IMAGE in methods and platform.has_profile
    return platform.name == "metal"  # installer-<arch>.tar: upstream's metal installer


# (kind, name, asset) of one target, before a schematic ID places it in the tree.
TargetTemplate = tuple[str, str, str]


def _template(
    kind: str, platform: Platform, arch: str, sb: str, version: TalosVersion
) -> TargetTemplate:
    asset = _kind_asset(kind, platform, arch, sb, version)
    name = f"{platform.name}-{arch}{sb}" if kind == "pxe" else asset
    return (kind, name, asset)


def _placed(template: TargetTemplate, schematic_id: str, version: TalosVersion) -> Target:
    kind, name, asset = template
    if kind == "pxe":
        return Target(kind, name, asset, tree.pxe_path(schematic_id, version, name))
    return Target(kind, name, asset, tree.image_path(schematic_id, version, asset))


def _row_kinds(row: TargetRow) -> tuple[str, ...]:
    if isinstance(row.assets, str):
        return DEFAULT_KINDS
    return tuple(row.assets)


def target_templates(
    config: Config, version: TalosVersion, *, secureboot: bool
) -> tuple[TargetTemplate, ...]:
    """What the config's matrix asks of every cell of one version: the same for every schematic,
    so a plan computes it once per version, not once per cell."""
    found: set[TargetTemplate] = set()
    rows: Iterable[TargetRow] = config.targets.rows
    sb_variants = ["", "-secureboot"] if secureboot and quirks_for(version).uki else [""]
    for row in rows:
        names = platform_names() if row.platform == "all" else (row.platform,)
        for platform_name in names:
            platform = get_platform(platform_name)
            if not platform.supports(version):
                continue
            kinds = DEFAULT_KINDS if row.platform == "all" else _row_kinds(row)
            variants = sb_variants if platform.secureboot else [""]
            for arch in row.archs:
                if arch not in platform.archs:
                    continue
                for kind in kinds:
                    if not _offered(kind, platform):
                        continue
                    for sb in variants:
                        if sb and kind not in SECUREBOOT_KINDS:
                            continue
                        found.add(_template(kind, platform, arch, sb, version))
    return tuple(sorted(found))


def targets_for(
    config: Config, schematic_id: str, version: TalosVersion, *, secureboot: bool
) -> tuple[Target, ...]:
    """Every file the config's matrix asks of one (schematic, version) cell."""
    templates = target_templates(config, version, secureboot=secureboot)
    return _targets_of(templates, schematic_id, version)


def _targets_of(
    templates: tuple[TargetTemplate, ...], schematic_id: str, version: TalosVersion
) -> tuple[Target, ...]:
    placed = (_placed(t, schematic_id, version) for t in templates)
    return tuple(sorted(placed, key=lambda t: t.path))


@dataclass(frozen=True)
class Cell:
    schematic: Schematic
    schematic_file: Path
    version: TalosVersion
    targets: tuple[Target, ...]
    key: str

    @property
    def cell_id(self) -> str:
        return f"{self.schematic.id}/{self.version.tag}"

    def target(self, kind: str, name: str) -> Target:
        for target in self.targets:
            if target.kind == kind and target.name == name:
                return target
        raise InvalidInput(f"{self.cell_id} has no {kind} target {name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.schematic.id,
            "file": str(self.schematic_file),
            "version": self.version.tag,
            "key": self.key,
            "targets": [t.to_json() for t in self.targets],
        }


@dataclass
class Plan:
    """Stale cells to build, the rest kept from the current generation."""

    config: Config
    cells: list[Cell]  # stale or missing
    kept: list[str]  # cell IDs whose published key is current
    removed: list[str]  # published cells no longer in the config
    site_key: str
    published_site_key: str | None
    generation: int | None
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.cells) + len(self.kept)

    @property
    def up_to_date(self) -> bool:
        return not self.cells and not self.removed and self.site_key == self.published_site_key

    @property
    def key(self) -> str:
        """Names this plan's publish: the generation it starts from and every stale cell's key."""
        return _digest(
            {
                "generation": self.generation,
                "cells": sorted(c.key for c in self.cells),
                "removed": self.removed,
                "site": self.site_key,
            }
        )

    def by_key(self) -> dict[str, Cell]:
        return {cell.key: cell for cell in self.cells}

    def summary(self) -> str:
        if self.up_to_date:
            return f"imagefactory: {self.total} cells, all published (generation {self.generation})"
        files = sum(len(c.targets) for c in self.cells)
        return (
            f"imagefactory: {len(self.cells)} of {self.total} cells to build ({files} files), "
            f"{len(self.kept)} unchanged, {len(self.removed)} removed"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "config": str(self.config.path),
            "generation": self.generation,
            "site": self.site_key,
            "cells": [c.to_json() for c in self.cells],
            "kept": self.kept,
            "removed": self.removed,
        }


def _digest(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def _file_digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def secureboot_enabled(config: Config) -> bool:
    wanted = config.targets.secureboot
    if wanted and config.secureboot is None:
        raise InvalidInput(
            f"{config.path}: targets.secureBoot is true but secureBoot keys are not set"
        )
    return config.secureboot is not None if wanted is None else wanted


def _keys_part(config: Config, secureboot: bool) -> dict[str, Any]:
    """The keys a cell's bytes depend on: Secure Boot keys (if built) and the publishing key."""
    part: dict[str, Any] = {"publish": _file_digest(config.publish_signing_key)}
    keys = config.secureboot
    if secureboot and keys is not None:
        part["secureboot"] = [
            _file_digest(p)
            for p in (
                keys.signing_key,
                keys.signing_cert,
                keys.pcr_key,
                keys.platform_key,
                keys.key_exchange_key,
                keys.signature_key,
            )
        ]
    return part


def _lock_part(
    entry: Mapping[str, Any], schematic: Schematic, targets: tuple[Target, ...]
) -> dict[str, Any]:
    """The lock entries a cell uses: the imager, the installer base, its extensions and overlay."""
    used: dict[str, Any] = {"imager": entry["imager"]["digest"]}
    if any(t.kind == "installer" for t in targets):
        used["installer"] = entry["installer"]["digest"]
    extensions = entry["extensions"]
    names = schematic.customization.official_extensions
    used["extensions"] = [
        [n, (extensions.get(n) or extensions.get(resolve_extension_name(n)) or {}).get("digest")]
        for n in names
    ]
    if schematic.overlay.name:
        used["overlay"] = (entry["overlays"].get(schematic.overlay.name) or {}).get("digest")
    return used


def build_format() -> str:
    """The factory's code version as far as outputs go (build.py's BUILD_FORMAT, read without
    importing the imager)."""
    from imagefactory.build import BUILD_FORMAT  # noqa: PLC0415

    return f"{__version__}/{BUILD_FORMAT}/{PLAN_FORMAT}"


def validate_schematics(config: Config) -> SchematicDir:
    """Every schematic in the config's directory; the first bad file is an error naming it."""
    if not config.schematics.is_dir():
        raise InvalidInput(f"{config.path}: schematics: {config.schematics} is not a directory")
    found = scan(config.schematics, config.store / "index")
    if found.errors:
        path, message = found.errors[0]
        more = (
            f" (and {len(found.errors) - 1} more bad schematic files)"
            if len(found.errors) > 1
            else ""
        )
        raise InvalidInput(
            f"{message}{more}" if str(path) in message else f"{path}: {message}{more}"
        )
    return found


def select_versions(config: Config, lock: Mapping[str, Any]) -> list[TalosVersion]:
    locked = {TalosVersion.parse(tag): tag for tag in lock["versions"]}
    if not config.targets.versions:
        return sorted(locked)
    chosen = []
    for text in config.targets.versions:
        version = TalosVersion.parse(text)
        if version not in locked:
            raise InvalidInput(f"{config.path}: targets.versions: {text} is not in the lock")
        chosen.append(version)
    return sorted(set(chosen))


def make_plan(config: Config, published: Mapping[str, Any] | None = None) -> Plan:
    """Compare every cell's key with the published generation's (`published`: its keys record)."""
    from imagefactory.publish.generations import current_keys  # noqa: PLC0415
    from imagefactory.publish.site import site_files, site_key  # noqa: PLC0415
    from imagefactory.sources import read_lock  # noqa: PLC0415

    schematics = validate_schematics(config)
    lock = read_lock(config)
    versions = select_versions(config, lock)
    secureboot = secureboot_enabled(config)
    published = current_keys(config) if published is None else published
    keys_part = _keys_part(config, secureboot)
    common = {"format": build_format(), "externalURL": config.external_url, "keys": keys_part}
    old_cells: Mapping[str, str] = published.get("cells", {})
    # Per version once: its target templates and their digest (a cell's paths add only its ID,
    # which its key holds anyway).
    templates = {v: target_templates(config, v, secureboot=secureboot) for v in versions}
    templates_digest = {v: _digest([list(t) for t in templates[v]]) for v in versions}
    cells, kept = [], []
    for schematic_id, found in sorted(schematics.by_id.items()):
        for version in versions:
            if not templates[version]:
                continue
            entry = lock["versions"][version.tag]
            targets = _targets_of(templates[version], schematic_id, version)
            key = _digest(
                {
                    **common,
                    "schematic": schematic_id,
                    "version": version.tag,
                    "lock": _lock_part(entry, found.schematic, targets),
                    "targets": templates_digest[version],
                }
            )
            cell = Cell(found.schematic, found.path, version, targets, key)
            if old_cells.get(cell.cell_id) == key:
                kept.append(cell.cell_id)
            else:
                cells.append(cell)
    wanted = set(kept) | {c.cell_id for c in cells}
    removed = sorted(set(old_cells) - wanted)
    return Plan(
        config=config,
        cells=cells,
        kept=kept,
        removed=removed,
        site_key=site_key(site_files(config, lock, schematics)),
        published_site_key=published.get("site"),
        generation=published.get("generation"),
    )


def plan_for(config_path: Path | str) -> Plan:
    return make_plan(load_config(config_path))


def stages_for(config: Config) -> tuple[str, ...]:
    """The receipt stages of every target: built, signed, and cached when a registry takes them."""
    if config.registry is not None and config.publish.cache:
        return ("built", "signed", "cached")
    return ("built", "signed")


def write_plan(plan: Plan, stages: tuple[str, ...]) -> tuple[Path, list[str], dict[str, Cell]]:
    """The plan file the jobs read and the publish marker `all` asks for ([] when up to date)."""
    from imagefactory.files import write_atomic  # noqa: PLC0415
    from imagefactory.publish.receipts import pipeline_dir  # noqa: PLC0415

    base = pipeline_dir(plan.config)
    plan_file = base / "plans" / f"{plan.key}.json"
    if plan.up_to_date:
        return plan_file, [], {}
    data = json.dumps({**plan.to_json(), "stages": list(stages)}, indent=1).encode()
    if not plan_file.is_file() or plan_file.read_bytes() != data:
        write_atomic(plan_file, data)
    return plan_file, [str(base / "published" / f"{plan.key}.json")], plan.by_key()


def planned_cells(config: Config, plan_file: Path) -> dict[str, Cell]:
    """The stale cells of a written plan, by key: what a job process needs, without re-planning."""
    from imagefactory.schematic import parse_schematic  # noqa: PLC0415

    data = json.loads(plan_file.read_bytes())
    cells = {}
    for entry in data["cells"]:
        path = Path(entry["file"])
        schematic = parse_schematic(path.read_bytes(), source=str(path))
        targets = tuple(Target(**t) for t in entry["targets"])
        version = TalosVersion.parse(entry["version"])
        cells[entry["key"]] = Cell(schematic, path, version, targets, entry["key"])
    return cells
