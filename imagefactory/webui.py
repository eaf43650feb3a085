"""The static web UI, rendered from what a published tree holds (jinja2 templates in `site/`).

Writes into the tree: `index.html` (the wizard), `ui/` (data the wizard loads per version, the
versions page, one page per public schematic and version, static assets). Only schematics the
config marks public are listed or get pages; every link path comes from `imagefactory.tree`.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imagefactory import tree
from imagefactory.config import Config
from imagefactory.errors import InvalidInput
from imagefactory.files import write_atomic
from imagefactory.platforms import PLATFORMS, BootMethod, DiskFormat, Platform, assets_for
from imagefactory.quirks import quirks_for
from imagefactory.schematic import Schematic, parse_schematic
from imagefactory.versions import TalosVersion

log = logging.getLogger(__name__)

SITE_DIR = Path(__file__).resolve().parent.parent / "site"
UI = "ui"
STATIC = posixpath.join(UI, "static")
STATIC_FILES = ("schematic.js", "wizard.js", "style.css")
ID_RE = re.compile(r"^[0-9a-f]{64}$")
# Placeholders the wizard substitutes into paths made by tree.py (a `v` keeps vtag() as is).
ID_SLOT, VERSION_SLOT, ASSET_SLOT = "{id}", "v{version}", "{asset}"
# Upstream's public factory: installer references in Talos docs and configs name this host.
UPSTREAM_FACTORY_HOST = "factory.talos.dev"


@dataclass
class PublicSchematic:
    schematic_id: str
    label: str
    schematic: Schematic
    # vtag -> published asset names (sidecars excluded)
    assets: dict[str, list[str]] = field(default_factory=dict)
    pxe: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Link:
    """One download on a result page: where it points and whether it is in the tree."""

    name: str
    href: str
    state: str  # published | on-demand | not-built
    sidecars: tuple[tuple[str, str], ...] = ()  # (label, href)


def schematic_json(s: Schematic) -> dict[str, Any]:
    """The schematic with upstream's field names, as JSON.parse of it gives (what schematic.js takes)."""
    cu = s.customization
    custom: dict[str, Any] = {}
    if cu.embedded_machine_configuration:
        custom["embeddedMachineConfiguration"] = cu.embedded_machine_configuration
    if cu.extra_kernel_args:
        custom["extraKernelArgs"] = list(cu.extra_kernel_args)
    if cu.meta:
        custom["meta"] = [{"key": m.key, "value": m.value} for m in cu.meta]
    if cu.official_extensions:
        custom["systemExtensions"] = {"officialExtensions": list(cu.official_extensions)}
    if cu.bootloader is not None:
        custom["bootloader"] = cu.bootloader.value
    sb = cu.secureboot
    if sb.enroll_keys or sb.include_well_known_certificates:
        custom["secureboot"] = {
            k: v
            for k, v in (
                ("enrollKeys", sb.enroll_keys),
                ("includeWellKnownCertificates", sb.include_well_known_certificates),
            )
            if v
        }
    if cu.disk_image.sector_size:
        custom["diskImage"] = {"sectorSize": cu.disk_image.sector_size}
    out: dict[str, Any] = {}
    o = s.overlay
    if o.image or o.name or o.options:
        out["overlay"] = {"image": o.image, "name": o.name}
        if o.options:
            out["overlay"]["options"] = dict(o.options)
    out["customization"] = custom
    return out


# ---- reading the published tree ---------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise InvalidInput(f"{path}: not JSON: {exc}") from exc


def published_versions(root: Path) -> list[TalosVersion]:
    listed = _read_json(root / tree.VERSIONS)
    if not isinstance(listed, list):
        raise InvalidInput(f"{root}: no {tree.VERSIONS} file: is this a published tree?")
    return sorted((TalosVersion.parse(v) for v in listed), reverse=True)


def _files_in(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        entry.name
        for entry in directory.iterdir()
        if entry.is_file() and not entry.name.endswith(tree.SIDECAR_SUFFIXES)
    )


def public_schematics(config: Config, root: Path) -> list[PublicSchematic]:
    """The config's public schematics that the tree has published, in the config's order."""
    wanted = config.site.public_schematics
    labels: dict[str, str] = {}
    if any(not ID_RE.match(entry) for entry in wanted):
        from imagefactory.schematic_dir import scan  # noqa: PLC0415

        for schematic_id, found in scan(config.schematics).by_id.items():
            labels[found.path.stem] = schematic_id
    out: list[PublicSchematic] = []
    for entry in wanted:
        found_id = entry if ID_RE.match(entry) else labels.get(entry)
        if found_id is None:
            raise InvalidInput(
                f"site.publicSchematics: no schematic file {entry!r} in {config.schematics}"
            )
        schematic_id = found_id
        path = root / tree.schematic_path(schematic_id)
        if not path.is_file():
            log.warning("public schematic %s (%s) is not published yet", entry, schematic_id)
            continue
        schematic = parse_schematic(path.read_bytes(), source=str(path))
        if schematic.id != schematic_id:
            raise InvalidInput(f"{path}: holds schematic {schematic.id}, not {schematic_id}")
        found_label = entry if entry != schematic_id else schematic_id[:12]
        public = PublicSchematic(schematic_id, found_label, schematic)
        for base, into in (("image", public.assets), ("pxe", public.pxe)):
            directory = root / base / schematic_id
            if directory.is_dir():
                for version_dir in sorted(directory.iterdir()):
                    names = _files_in(version_dir)
                    if names:
                        into[version_dir.name] = names
        out.append(public)
    return out


# ---- what the wizard needs per version --------------------------------------------------------


def ui_assets(platform: Platform, arch: str, version: TalosVersion, sb: bool) -> list[str]:
    """What upstream's final page links for a platform: its fixed default disk image first, then
    every asset the platform offers for the version, then raw and qcow2 disk images."""
    offered = assets_for(platform.name, arch, version, secureboot=sb)
    if not offered:
        return []
    names: list[str] = []
    disk = BootMethod.DISK_IMAGE in platform.boot_methods and platform.has_profile
    if disk and platform.ui_disk_image_suffix:
        names.append(platform.disk_image_path(arch, platform.ui_disk_image_suffix, secureboot=sb))
    names += offered
    if disk:
        compressed = platform.default_out_format(version).suffix
        names.append(
            platform.disk_image_path(arch, f"{DiskFormat.RAW.value}{compressed}", secureboot=sb)
        )
        names.append(platform.disk_image_path(arch, DiskFormat.QCOW2.value, secureboot=sb))
    return list(dict.fromkeys(names))


def version_data(version: TalosVersion, root: Path) -> dict[str, Any]:
    quirks = quirks_for(version)
    platforms: dict[str, Any] = {}
    for platform in PLATFORMS:
        if not platform.supports(version):
            continue
        assets: dict[str, list[str]] = {}
        for arch in platform.archs:
            for sb in (False, True):
                listed = ui_assets(platform, arch, version, sb)
                if listed:
                    assets[f"{arch}-secureboot" if sb else str(arch)] = listed
        platforms[platform.name] = {
            "label": platform.label,
            "archs": [str(a) for a in platform.archs],
            "secureboot": platform.secureboot and quirks.uki,
            "pxe": BootMethod.PXE in platform.boot_methods,
            "assets": assets,
        }
    overlays = _read_json(root / tree.overlays_path(version)) or []
    return {
        "version": tree.vtag(version),
        "secureboot": quirks.uki,
        "overlays": quirks.overlays,
        "bootloader": quirks.iso_bootloader_selectable,
        "embeddedConfig": quirks.embedded_config,
        "platformInstaller": quirks.unified_installer,
        "platforms": platforms,
        "boards": [{"name": o["name"], "image": o["image"]} for o in overlays],
    }


def minor_groups(versions: Iterable[TalosVersion]) -> list[dict[str, Any]]:
    """Versions grouped by minor line, newest first; pre-releases in their own `-pre` group."""
    groups: dict[str, list[str]] = {}
    for version in sorted(versions, reverse=True):
        name = version.minor_line + ("-pre" if version.is_prerelease else "")
        groups.setdefault(name, []).append(tree.vtag(version))
    return [{"name": name, "versions": tags} for name, tags in groups.items()]


def default_version(versions: Iterable[TalosVersion]) -> str | None:
    ordered = sorted(versions, reverse=True)
    stable = [v for v in ordered if not v.is_prerelease]
    candidates = stable or ordered
    return tree.vtag(candidates[0]) if candidates else None


def registry_host(config: Config) -> str:
    if config.site.registry_host:
        return config.site.registry_host.rstrip("/")
    return urlsplit(config.external_url).netloc or "localhost"


def site_data(config: Config, root: Path, public: list[PublicSchematic]) -> dict[str, Any]:
    versions = published_versions(root)
    return {
        "groups": minor_groups(versions),
        "defaultVersion": default_version(versions),
        # Overlays (SBC boards) start at Talos 1.7.
        "sbcVersions": [tree.vtag(v) for v in versions if quirks_for(v).overlays],
        "paths": {
            "image": tree.image_path(ID_SLOT, VERSION_SLOT, ASSET_SLOT),
            "pxe": tree.pxe_path(ID_SLOT, VERSION_SLOT, ASSET_SLOT),
            "schematic": tree.schematic_path(ID_SLOT),
            "extensions": tree.extensions_path(VERSION_SLOT),
            "version": posixpath.join(UI, "version", VERSION_SLOT + ".json"),
            "page": posixpath.join(UI, "schematics", ID_SLOT, VERSION_SLOT + ".html"),
            "signingKey": tree.SIGNING_KEY,
        },
        "checksums": list(tree.CHECKSUM_SUFFIXES),
        "signature": tree.SIGNATURE_SUFFIX,
        "serverURL": config.site.server_url,
        "registryHost": registry_host(config),
        "hiddenExtensions": ["siderolabs/metal-agent"],
        "mirror": mirror_snippet(config.external_url),
        "public": {
            p.schematic_id: {
                "label": p.label,
                "schematic": schematic_json(p.schematic),
                "versions": sorted(p.assets, reverse=True),
            }
            for p in public
        },
    }


# ---- result pages -----------------------------------------------------------------------------


def installer_refs(host: str, schematic_id: str, version: TalosVersion, platform: str) -> list[str]:
    tag = tree.vtag(version)
    names = ["installer"]
    if platform != "metal" and quirks_for(version).unified_installer:
        names = [f"{platform}-installer"]
    refs = [f"{host}/{name}/{schematic_id}:{tag}" for name in names]
    if quirks_for(version).uki:
        refs += [f"{host}/{name}-secureboot/{schematic_id}:{tag}" for name in names]
    return refs


def mirror_snippet(external_url: str) -> str:
    """Machine config that sends a node's pulls of upstream's installer images (the factory host
    in upstream's docs and defaults) to this factory."""
    return (
        "machine:\n"
        "  registries:\n"
        "    mirrors:\n"
        f"      {UPSTREAM_FACTORY_HOST}:\n"
        "        endpoints:\n"
        f"          - {external_url.rstrip('/')}\n"
    )


def _link(config: Config, root: Path, prefix: str, path: str) -> Link:
    name = posixpath.basename(path)
    if (root / path).is_file():
        sidecars = tuple(
            (suffix.lstrip("."), prefix + path + suffix)
            for suffix in tree.SIDECAR_SUFFIXES
            if (root / (path + suffix)).is_file()
        )
        return Link(name, prefix + path, "published", sidecars)
    if config.site.server_url:
        return Link(name, config.site.server_url.rstrip("/") + "/" + path, "on-demand")
    return Link(name, "", "not-built")


def result_links(
    config: Config, root: Path, prefix: str, public: PublicSchematic, tag: str
) -> list[Link]:
    """Every file published for this schematic and version, then metal's default set if missing."""
    version = TalosVersion.parse(tag)
    names = list(public.assets.get(tag, []))
    archs = ("arm64",) if public.schematic.overlay.name else ("amd64", "arm64")
    for arch in archs:
        names += assets_for("metal", arch, version)
    return [
        _link(config, root, prefix, tree.image_path(public.schematic_id, tag, name))
        for name in dict.fromkeys(names)
    ]


# ---- rendering ---------------------------------------------------------------------------------


def _environment() -> Any:
    import jinja2  # noqa: PLC0415

    if not (SITE_DIR / "templates").is_dir():
        raise InvalidInput(f"{SITE_DIR}: the web UI's templates are missing")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(SITE_DIR / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return env


def _rel(page: str) -> str:
    """The prefix from a page at tree path `page` back to the tree's root."""
    depth = page.count("/")
    return "../" * depth


def render_site(config: Config, root: Path) -> list[str]:
    """Render the UI into the published tree at `root`; returns the tree paths written."""
    env = _environment()
    versions = published_versions(root)
    public = public_schematics(config, root)
    data = site_data(config, root, public)
    files: dict[str, bytes] = {}

    def page(path: str, template: str, **context: Any) -> None:
        html = env.get_template(template).render(
            root=_rel(path), static=_rel(path) + STATIC + "/", **context
        )
        files[path] = html.encode()

    files[posixpath.join(UI, "data.json")] = json.dumps(data, sort_keys=True).encode()
    for version in versions:
        files[posixpath.join(UI, "version", tree.vtag(version) + ".json")] = json.dumps(
            version_data(version, root), sort_keys=True
        ).encode()
    page("index.html", "wizard.html", public=public, data=data)
    page(
        posixpath.join(UI, "versions.html"),
        "versions.html",
        groups=data["groups"],
        catalogs={
            tree.vtag(v): {
                "extensions": _read_json(root / tree.extensions_path(v)) or [],
                "overlays": _read_json(root / tree.overlays_path(v)) or [],
                "quirks": quirks_for(v),
            }
            for v in versions
        },
    )
    page(posixpath.join(UI, "schematics", "index.html"), "schematics.html", public=public)
    for p in public:
        canonical = p.schematic.canonical().decode("utf-8", "surrogateescape")
        for tag in sorted(p.assets, reverse=True):
            path = posixpath.join(UI, "schematics", p.schematic_id, tag + ".html")
            version = TalosVersion.parse(tag)
            prefix = _rel(path)
            page(
                path,
                "schematic.html",
                s=p,
                tag=tag,
                yaml=canonical,
                yaml_href=prefix + tree.schematic_path(p.schematic_id),
                links=result_links(config, root, prefix, p, tag),
                pxe=[
                    (name, prefix + tree.pxe_path(p.schematic_id, tag, name))
                    for name in p.pxe.get(tag, [])
                ],
                installers=installer_refs(data["registryHost"], p.schematic_id, version, "metal"),
                mirror=mirror_snippet(config.external_url),
                signing_key=prefix + tree.SIGNING_KEY,
                has_signing_key=(root / tree.SIGNING_KEY).is_file(),
                server_url=config.site.server_url,
            )
    for name in STATIC_FILES:
        files[posixpath.join(STATIC, name)] = (SITE_DIR / "static" / name).read_bytes()
    for path, content in sorted(files.items()):
        write_atomic(root / path, content)
    _drop_stale(root / UI, {root / path for path in files})
    return sorted(files)


def _drop_stale(ui_dir: Path, written: set[Path]) -> None:
    """Remove UI files an earlier render left (a schematic no longer public keeps no page)."""
    for path in sorted(ui_dir.rglob("*"), reverse=True):
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        elif path not in written:
            path.unlink()


def render(config: Config, out: Path) -> list[str]:
    root = Path(os.path.realpath(out))
    if not root.is_dir():
        raise InvalidInput(f"{out}: not a directory")
    return render_site(config, root)
