"""Upstream sources, pinned: versions from the imager's tags, catalogs, and the verified lock file.

Nothing reaches the lock unless its cosign signature verified; `lock --check` compares it with the source.
"""

from __future__ import annotations

import functools
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from imagefactory.catalogs import (
    ExtensionEntry,
    OverlayEntry,
    parse_extensions,
    parse_overlays,
)
from imagefactory.config import LAYOUT_PREFIX, Config
from imagefactory.errors import BuildError, InvalidInput, NotFound
from imagefactory.files import read_bounded, shown, write_atomic
from imagefactory.imager.extensions import Manifest, parse_manifest
from imagefactory.oci import open_target
from imagefactory.oci.pull import pull_image
from imagefactory.oci.target import Target
from imagefactory.quirks import quirks_for
from imagefactory.signing.keys import key_id, load_public_key
from imagefactory.signing.policy import Verifier
from imagefactory.versions import TalosVersion
from imagefactory.yamlload import limits

LOCK_FORMAT = 1
CATALOG_ARCH = "amd64"
# Upstream keeps pre-releases only of the newest minor, and only alpha/beta/rc with a number.
PRERELEASE_KINDS = frozenset({"alpha", "beta", "rc"})


def filter_versions(
    tags: Iterable[str], minimum: TalosVersion | None, broken: Iterable[TalosVersion]
) -> list[TalosVersion]:
    """Upstream's rules for which imager tags are offered, oldest first."""
    versions = []
    for tag in tags:
        try:
            versions.append(TalosVersion.parse(tag))
        except InvalidInput:
            continue
    if not versions:
        return []
    newest = max(versions)
    broken_set = set(broken)

    def offered(v: TalosVersion) -> bool:
        if (minimum is not None and v < minimum) or v in broken_set:
            return False
        if not v.prerelease:
            return True
        return (
            (v.major, v.minor) == (newest.major, newest.minor)
            and len(v.prerelease) == 2
            and v.prerelease[0] in PRERELEASE_KINDS
            and v.prerelease[1].isdigit()
        )

    return sorted(set(filter(offered, versions)))


@dataclass(frozen=True)
class PinnedImage:
    """One source image, pinned by digest, with how its signature was verified."""

    repository: str  # where it is pulled from in this source (namespace included)
    tag: str
    digest: str
    verified: str

    def to_json(self) -> dict[str, str]:
        return {
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "verified": self.verified,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> PinnedImage:
        return cls(data["repository"], data["tag"], data["digest"], data["verified"])


class SourceReader:
    """Reads one configured source (registry or OCI layout), verifying every image it pins."""

    def __init__(self, config: Config, *, target: Target | None = None) -> None:
        self.config = config
        src = config.sources
        self.target = target or open_target(
            src.registry,
            insecure=src.insecure,
            username=src.username,
            password=src.password(),
        )
        self.verifier = Verifier.from_config(src.verify)

    def _repo(self, name: str) -> str:
        return self.config.sources.repository(name)

    def available_versions(self) -> list[TalosVersion]:
        sel = self.config.versions
        minimum = TalosVersion.parse(sel.minimum) if sel.minimum else None
        broken = [TalosVersion.parse(v) for v in sel.broken]
        tags = self.target.list_tags(self._repo(self.config.sources.components.imager))
        return filter_versions(tags, minimum, broken)

    def selected_versions(self) -> list[TalosVersion]:
        sel = self.config.versions
        if not sel.listed:
            return self.available_versions()
        broken = {TalosVersion.parse(v) for v in sel.broken}
        imager = self._repo(self.config.sources.components.imager)
        tags = set(self.target.list_tags(imager))
        chosen = []
        for text in sel.listed:
            version = TalosVersion.parse(text)
            if version in broken:
                raise InvalidInput(f"{self.config.path}: version {version.tag} is listed as broken")
            if version.tag not in tags:
                raise NotFound(f"version {version.tag} is not in {self.target.name}/{imager}")
            chosen.append(version)
        return sorted(chosen)

    def pin(self, name: str, reference: str, *, tag: str = "") -> PinnedImage:
        """Resolve upstream repository `name` at a tag (or digest) and verify its signature.

        The signature must name `name` (e.g. siderolabs/imager) under any registry, so mirrors that
        copied upstream's signatures verify, and one component's signature never vouches for another.
        """
        repository = self._repo(name)
        descriptor = self.target.resolve(repository, reference)
        verified = self.verifier.verify(self.target, repository, descriptor.digest, f"*/{name}")
        how = f"{verified.mode.value} {verified.signer}".strip()
        return PinnedImage(repository, tag or reference, descriptor.digest, how)

    def read_files(self, pinned: PinnedImage, names: Sequence[str]) -> dict[str, bytes]:
        """Regular files from an image's layers (later layers win), without unpacking it."""
        image = pull_image(self.target, pinned.repository, pinned.digest, CATALOG_ARCH)
        wanted = set(names)
        found: dict[str, bytes] = {}
        for layer in image.layers:
            # Closing the blob reads it to the end and checks its digest, which tarfile alone
            # never would: it stops at the end-of-archive blocks.
            with self.target.open_blob(pinned.repository, layer.digest) as blob:
                try:
                    with tarfile.open(fileobj=blob, mode="r|*") as archive:
                        for member in archive:
                            name = member.name.removeprefix("./").lstrip("/")
                            if name in wanted and member.isfile():
                                extracted = archive.extractfile(member)
                                if extracted is not None:
                                    found[name] = extracted.read()
                except tarfile.TarError as exc:
                    # Raised inside the with: a digest mismatch found on close takes its place.
                    what = f"{image.reference}: layer {layer.digest}"
                    raise BuildError(f"{what}: not a valid tar: {exc}") from None
        return found

    def extensions(self, catalog: PinnedImage) -> tuple[ExtensionEntry, ...]:
        files = self.read_files(catalog, ["image-digests", "descriptions.yaml"])
        if "image-digests" not in files:
            raise BuildError(f"{catalog.repository}@{catalog.digest}: no image-digests file")
        descriptions = files.get("descriptions.yaml")
        return parse_extensions(
            files["image-digests"].decode(), descriptions.decode() if descriptions else None
        )

    def manifest(self, extension: PinnedImage) -> Manifest:
        files = self.read_files(extension, ["manifest.yaml"])
        if "manifest.yaml" not in files:
            raise BuildError(f"{extension.repository}@{extension.digest}: no manifest.yaml")
        return parse_manifest(files["manifest.yaml"], source=extension.repository)

    def overlays(self, catalog: PinnedImage) -> tuple[OverlayEntry, ...]:
        files = self.read_files(catalog, ["overlays.yaml"])
        if "overlays.yaml" not in files:
            raise BuildError(f"{catalog.repository}@{catalog.digest}: no overlays.yaml file")
        return parse_overlays(files["overlays.yaml"].decode())

    def lock_version(self, version: TalosVersion) -> dict[str, Any]:
        comps = self.config.sources.components
        quirks = quirks_for(version)
        tag = version.tag
        installer_name = comps.installer_base if quirks.unified_installer else comps.installer
        entry: dict[str, Any] = {
            "imager": self.pin(comps.imager, tag).to_json(),
            "installer": {
                "component": installer_name,
                **self.pin(installer_name, tag).to_json(),
            },
        }
        catalog = self.pin(comps.extensions, tag)
        entry["extensionsCatalog"] = catalog.to_json()
        extensions = {}
        for ext in self.extensions(catalog):
            pinned = self.pin(ext.name, ext.image.digest, tag=ext.image.tag)
            manifest = self.manifest(pinned)
            extensions[ext.name] = {
                **pinned.to_json(),
                "ref": ext.ref,
                "author": ext.author,
                "description": ext.description,
                # Kept so that a build refuses an incompatible extension before fetching anything.
                "manifestName": manifest.metadata.name,
                "talosVersion": manifest.metadata.talos_version,
            }
        entry["extensions"] = dict(sorted(extensions.items()))
        entry["overlaysCatalog"] = None
        entry["overlays"] = {}
        if quirks.overlays:
            overlay_catalog = self.pin(comps.overlays, tag)
            entry["overlaysCatalog"] = overlay_catalog.to_json()
            for overlay in self.overlays(overlay_catalog):
                image = overlay.image
                pinned = self.pin(image.repository, image.digest, tag=image.tag)
                entry["overlays"][overlay.name] = {
                    **pinned.to_json(),
                    "image": image.repository,
                    "ref": overlay.ref,
                }
        return entry


def lock_source(config: Config) -> dict[str, str]:
    """What a lock was made from: builds refuse a lock made from another source or policy."""
    src = config.sources
    registry = src.registry
    layout = src.layout_path
    if layout is not None and layout.is_relative_to(config.path.parent):
        # Relative to the config, so a committed lock holds for every clone of the repository.
        registry = LAYOUT_PREFIX + str(layout.relative_to(config.path.parent))
    verification = src.verify.describe()
    if src.verify.public_key is not None:
        verification = f"public key sha256:{key_id(load_public_key(src.verify.public_key))}"
    return {"registry": registry, "namespace": src.namespace, "verification": verification}


def make_lock(config: Config, reader: SourceReader | None = None) -> dict[str, Any]:
    if config.sources.verify.disabled:
        raise InvalidInput(
            f"{config.path}: sources.verify is disabled, and nothing unverified goes into a lock; "
            "configure publicKey or keyless"
        )
    reader = reader or SourceReader(config)
    return {
        "lockFormat": LOCK_FORMAT,
        "source": lock_source(config),
        "versions": {v.tag: reader.lock_version(v) for v in reader.selected_versions()},
    }


def _absolute_registry(registry: str, base: Path) -> str:
    if registry.startswith(LAYOUT_PREFIX):
        return LAYOUT_PREFIX + str((base / registry.removeprefix(LAYOUT_PREFIX)).resolve())
    return registry


def check_lock_source(config: Config, lock: Mapping[str, Any]) -> None:
    """The lock (beside the config) must name the config's source and verification."""
    locked = dict(lock.get("source") or {})
    expected = lock_source(config)
    base = config.path.parent
    for source in (locked, expected):
        source["registry"] = _absolute_registry(str(source.get("registry", "")), base)
    if locked != expected:
        raise InvalidInput(
            f"{config.lock_path}: made from another source or verification than {config.path} "
            "names; run `imagefactory lock`"
        )


def lock_bytes(lock: Mapping[str, Any]) -> bytes:
    return (json.dumps(lock, indent=2, sort_keys=True) + "\n").encode()


def write_lock(config: Config, lock: Mapping[str, Any]) -> Path:
    """Write the lock beside the config: a temporary name, then rename, so readers never see half."""
    path = config.lock_path
    write_atomic(path, lock_bytes(lock))
    return path


@functools.cache
def _lock_schema() -> dict[str, Any]:
    text = resources.files("imagefactory.schemas").joinpath("lock.schema.yaml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def read_lock(config: Config) -> dict[str, Any]:
    """The lock beside the config: a bounded regular file whose shape is checked before any use."""
    path = config.lock_path
    if not path.exists() and not path.is_symlink():
        raise InvalidInput(f"{path}: no lock file; run `imagefactory lock` first")
    data = read_bounded(path, limits().lock_bytes, "lock")
    try:
        lock = json.loads(data)
    except RecursionError:
        raise InvalidInput(f"{path}: lock is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int too large
        raise InvalidInput(f"{path}: not valid JSON: {shown(exc)}") from None
    if not isinstance(lock, dict) or lock.get("lockFormat") != LOCK_FORMAT:
        found = lock.get("lockFormat") if isinstance(lock, dict) else type(lock).__name__
        raise InvalidInput(f"{path}: unknown lock format {shown(repr(found), 60)}")
    validator = jsonschema.Draft202012Validator(_lock_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(lock))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise InvalidInput(f"{path}: {shown(where, 120)}: {shown(error.message, 200)}")
    return lock


def lock_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable paths where two locks differ."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        where = f"{prefix}{key}"
        if key not in old:
            diffs.append(f"{where}: added")
        elif key not in new:
            diffs.append(f"{where}: removed")
        elif isinstance(old[key], Mapping) and isinstance(new[key], Mapping):
            diffs.extend(lock_differences(old[key], new[key], where + "."))
        elif old[key] != new[key]:
            diffs.append(f"{where}: {old[key]!r} -> {new[key]!r}")
    return diffs
