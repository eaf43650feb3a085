"""Build one asset (schematic x Talos version x asset path) from the lock, content-addressed.

An output's key is the sha256 of canonical JSON of what it is made from; a key already built is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory import __version__, cmdline, tools
from imagefactory.config import Config
from imagefactory.errors import BuildError, InvalidInput
from imagefactory.files import error_of, shown
from imagefactory.imager import pcr
from imagefactory.imager.disk.asset import build_image
from imagefactory.imager.efivars import AuthFiles, supplied_auth_files
from imagefactory.imager.extensions import resolve_extensions
from imagefactory.imager.formats import sparse_copy
from imagefactory.imager.initramfs import build_initramfs
from imagefactory.imager.installer import (
    assets_files,
    base_installer,
    build_installer,
    overlay_files,
)
from imagefactory.imager.iso import IsoInputs, build_iso
from imagefactory.imager.overlay import get_options
from imagefactory.imager.pesign import SecureBootSigner, sign
from imagefactory.imager.uki import build_uki
from imagefactory.imager.virtual import virtual_extensions
from imagefactory.inputs import BootAssets, LockedSources
from imagefactory.profile import EnrollKeys, OutputKind, Profile, resolve
from imagefactory.schematic import Bootloader, Schematic
from imagefactory.store import install_output, locked, scratch, verified_output
from imagefactory.versions import TalosVersion

# Bump when a builder changes what it writes for the same inputs.
BUILD_FORMAT = 1


def _key(parts: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {"format": BUILD_FORMAT, "factory": __version__, **parts},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@contextmanager
def _scratch(parent: Path) -> Iterator[Path]:
    """A flock-held scratch directory; its tools keep their temporary files in it."""
    with scratch(parent, ".work-") as work, tools.temporary_files(work / ".tmp"):
        yield work


@dataclass
class Build:
    """One asset's build: its profile, its inputs, and the store where its steps land."""

    config: Config
    sources: LockedSources
    schematic: Schematic
    profile: Profile

    @property
    def version(self) -> TalosVersion:
        return self.profile.version

    def cached(
        self, step: str, parts: Mapping[str, Any], name: str, make: Callable[[Path], None]
    ) -> Path:
        """Run `make(out)` once per key; the result is renamed into store/builds/<key>/<name>."""
        key = _key({"step": step, **parts})
        final = self.config.store / "builds" / key / name
        # Checked before locking too, so a read-only store serves what it holds.
        if verified_output(final):
            return final
        with locked(final.parent):
            if not verified_output(final):
                with _scratch(self.config.store / "builds") as work:
                    out = work / name
                    make(out)
                    if not out.is_file():
                        raise BuildError(f"{step}: the builder wrote no {name}")
                    final.parent.mkdir(parents=True, exist_ok=True)
                    # PCR digests recorded beside an output stay valid: a rename keeps size and mtime.
                    sidecar = pcr.sidecar_path(out)
                    if sidecar.is_file():
                        os.replace(sidecar, pcr.sidecar_path(final))
                    install_output(out, final)
        return final

    # -- inputs shared by several kinds ------------------------------------------------------

    def assets(self) -> BootAssets:
        return self.sources.boot_assets(self.version, self.profile.arch)

    def imager_digest(self) -> str:
        digest: str = self.sources.version_entry(self.version)["imager"]["digest"]
        return digest

    def extension_names(self) -> tuple[str, ...]:
        return self.schematic.customization.official_extensions

    def initramfs(self) -> Path:
        """The imager's initramfs with the schematic's extensions and the virtual ones appended."""
        names = self.extension_names()
        digests = self.sources.extension_digests(self.version, names)
        parts = {
            "imager": self.imager_digest(),
            "arch": self.profile.arch,
            "version": str(self.version),
            "extensions": [[n, digests[n]] for n in names],
            "schematic": self.schematic.id,
            "externalURL": self.config.external_url,
        }

        def make(out: Path) -> None:
            trees = self.sources.extension_trees(self.version, names, self.profile.arch)
            extensions = resolve_extensions(names, trees, self.version)
            assets = self.assets()
            with _scratch(self.config.store / "builds") as work:
                virtual = virtual_extensions(
                    self.schematic, self.version, work, external_url=self.config.external_url
                )
                build_initramfs(
                    assets.initramfs,
                    (*extensions, *virtual),
                    self.version,
                    out,
                    epoch=assets.epoch,
                )

        return self.cached("initramfs", parts, "initramfs.xz", make)

    def overlay_kernel_args(self) -> tuple[str, ...]:
        """The overlay installer's kernel arguments; upstream asks only for boot media, not cmdline-."""
        overlay = self.schematic.overlay
        if not overlay.name or self.profile.kind in {OutputKind.CMDLINE, OutputKind.KERNEL}:
            return ()
        entry = self.sources.overlay_entry(self.version, overlay.name)
        root = self.sources.overlay_tree(entry)
        return get_options(root, overlay.name, overlay.options).kernel_args

    def cmdline(self) -> str:
        return cmdline.build(self.profile, overlay_kernel_args=self.overlay_kernel_args())

    def signer(self) -> SecureBootSigner | None:
        if not self.profile.secureboot:
            return None
        keys = self.config.secureboot
        if keys is None:
            raise InvalidInput("error enhancing profile from schematic: secure boot is disabled")
        return SecureBootSigner(key=keys.signing_key, cert=keys.signing_cert)

    def auth_files(self) -> AuthFiles | None:
        """Configured PK/KEK/db updates for a Secure Boot ISO, else None (made from the cert)."""
        keys = self.config.secureboot
        if not self.profile.secureboot or keys is None:
            return None
        return supplied_auth_files(keys.platform_key, keys.key_exchange_key, keys.signature_key)

    def _signer_parts(self) -> dict[str, str]:
        signer = self.signer()
        if signer is None:
            return {}
        signer.check()
        digest = hashlib.sha256(signer.cert.read_bytes()).hexdigest()
        assert self.config.secureboot is not None
        pcr = self.config.secureboot.pcr_key
        if not pcr.is_file():
            raise InvalidInput(f"Secure Boot PCR signing key {pcr} does not exist")
        parts = {"signingCert": digest, "pcrKey": hashlib.sha256(pcr.read_bytes()).hexdigest()}
        for name, path in (self.auth_files() or {}).items():
            parts[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        return parts

    def uki(self) -> Path:
        line = self.cmdline()
        parts = {
            "initramfs": str(self.initramfs()),
            "imager": self.imager_digest(),
            "profile": self.profile.to_json(),
            "cmdline": line,
            **self._signer_parts(),
        }

        def make(out: Path) -> None:
            assets = self.assets()
            build_uki(
                stub=assets.sd_stub,
                kernel=assets.kernel,
                initramfs=self.initramfs(),
                cmdline=line,
                version=self.version,
                arch=self.profile.arch,
                out=out,
                epoch=assets.epoch,
                kind=self.profile.kind,
                signer=self.signer(),
                pcr_key=self.config.secureboot.pcr_key
                if self.config.secureboot and self.profile.secureboot
                else None,
            )

        return self.cached("uki", parts, "uki.efi", make)


def _kernel(build: Build, out: Path) -> None:
    shutil.copyfile(build.assets().kernel, out)


def _initramfs(build: Build, out: Path) -> None:
    shutil.copyfile(build.initramfs(), out)


def _cmdline(build: Build, out: Path) -> None:
    out.write_bytes(build.cmdline().encode())


def _uki(build: Build, out: Path) -> None:
    shutil.copyfile(build.uki(), out)


def _iso(build: Build, out: Path) -> None:
    profile = build.profile
    quirks = profile.quirks
    bootloader = profile.bootloader or quirks.iso_bootloader(
        profile.arch, secureboot=profile.secureboot
    )
    if bootloader is Bootloader.DUAL_BOOT and profile.arch != "amd64":
        # arm64 firmware has no BIOS to hand the GRUB half to: the UEFI half is the whole ISO.
        bootloader = Bootloader.SD_BOOT
    assets = build.assets()
    needs_uki = bootloader.value != "grub"
    build_iso(
        out=out,
        version=build.version,
        arch=profile.arch,
        bootloader=bootloader,
        inputs=IsoInputs(
            kernel=assets.kernel,
            initramfs=build.initramfs(),
            cmdline=build.cmdline(),
            uki=build.uki() if needs_uki else None,
            sd_boot=assets.sd_boot if needs_uki else None,
        ),
        epoch=assets.epoch,
        secureboot=profile.secureboot,
        enroll_keys=profile.enroll_keys or EnrollKeys.IF_SAFE,
        signer=build.signer(),
        auth_files=build.auth_files(),
    )


def _installer(build: Build, out: Path) -> None:
    """installer-<arch>.tar: the locked base installer plus the version's assets layer."""
    profile = build.profile
    entry = build.sources.version_entry(build.version)["installer"]
    overlay = build.schematic.overlay
    # Made from the base installer and overlay image as much as from the imager: both key it.
    parts = {
        "installer": entry["digest"],
        "overlay": build.sources.overlay_entry(build.version, overlay.name)["digest"]
        if overlay.name
        else "",
        "profile": profile.to_json(),
        "schematic": build.schematic.id,
        **build._signer_parts(),
    }

    def make(tar: Path) -> None:
        assets = build.assets()
        with_uki = profile.secureboot or profile.quirks.unified_installer
        sd_boot = assets.sd_boot
        signer = build.signer()
        if with_uki and signer is not None:
            sd_boot = tar.parent / "systemd-boot.signed.efi"
            sign(assets.sd_boot, sd_boot, signer, epoch=assets.epoch)
        files = assets_files(
            profile.arch,
            uki=build.uki() if with_uki else None,
            sd_boot=sd_boot if with_uki else None,
            kernel=None if with_uki else assets.kernel,
            initramfs=None if with_uki else build.initramfs(),
            signed_name=profile.secureboot and not profile.quirks.unified_installer,
        )
        layers = [files]
        if overlay.name:
            arch = profile.arch
            layers.append(overlay_files(build.sources, build.version, arch, overlay, tar.parent))
        build_installer(
            tar,
            base_installer(build.sources, build.version, profile.arch),
            layers,
            arch=profile.arch,
            epoch=assets.epoch,
            two_layer_quirk=profile.quirks.installer_two_layers,
        )

    built = build.cached("installer", parts, profile.canonical_path, make)
    os.link(built, out)  # store files are never edited in place: one inode serves both keys


# One builder per output kind; kinds not listed are refused with a clear message.
BUILDERS: dict[OutputKind, Callable[[Build, Path], None]] = {
    OutputKind.KERNEL: _kernel,
    OutputKind.INITRAMFS: _initramfs,
    OutputKind.CMDLINE: _cmdline,
    OutputKind.UKI: _uki,
    OutputKind.ISO: _iso,
    OutputKind.INSTALLER: _installer,
    OutputKind.IMAGE: build_image,
}


def build_asset(
    config: Config,
    schematic: Schematic,
    version: TalosVersion,
    asset_path: str,
    *,
    sources: LockedSources | None = None,
) -> Path:
    """Build (or reuse) one asset; returns its path in the store."""
    sources = sources or LockedSources(config)
    sources.version_entry(version)
    profile = resolve(asset_path, version, schematic)
    builder = BUILDERS.get(profile.kind)
    if builder is None:
        raise BuildError(f"{asset_path}: {profile.kind} assets are not built by this factory yet")
    build = Build(config, sources, schematic, profile)
    # Unknown extensions and overlays, and missing Secure Boot keys, are refused before any work;
    # kernel and cmdline carry neither, so upstream does not look them up for those.
    extensions: dict[str, str] = {}
    overlay = ""
    if profile.kind not in {OutputKind.CMDLINE, OutputKind.KERNEL}:
        names = schematic.customization.official_extensions
        extensions = sources.extension_digests(version, names)
        if schematic.overlay.name:
            overlay = sources.overlay_entry(version, schematic.overlay.name)["digest"]
    parts = {
        "asset": profile.canonical_path,
        "profile": profile.to_json(),
        "schematic": schematic.id,
        "imager": build.imager_digest(),
        "extensions": sorted(extensions.items()),
        "overlay": overlay,
        **build._signer_parts(),
    }
    if profile.kind is OutputKind.INSTALLER:
        # An installer is made from the locked base installer too, not only from the imager.
        parts["installer"] = sources.version_entry(version)["installer"]["digest"]
    return build.cached(
        f"asset-{profile.kind}", parts, profile.canonical_path, lambda out: builder(build, out)
    )


def link_into(source: Path, out_dir: Path, name: str) -> Path:
    """Place a built file at out_dir/name: copy to a temporary name, then rename.

    A copy, not a hard link: editing a published file must never change the store's. Holes are kept. Any failure
    leaves nothing new behind and names the path: bad --out is exit 2, a full disk exit 1.
    """
    if "/" in name or "\0" in name or name in {"", ".", ".."}:
        raise InvalidInput(f"invalid asset path: {shown(repr(name))}")
    if out_dir.is_symlink() and not out_dir.exists():
        raise InvalidInput(f"{shown(out_dir)}: output directory is a dangling symbolic link")
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInput(f"{shown(out_dir)}: output directory is not a directory")
    dest = out_dir / name
    tmp = out_dir / f".{name}.tmp-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if dest.is_dir() and not dest.is_symlink():
            raise InvalidInput(f"{shown(dest)}: is a directory, not a place for the asset")
        tmp.unlink(missing_ok=True)
        try:
            # Holes stay holes: a published 4 GiB raw holding 40 MiB takes 40 MiB.
            sparse_copy(source, tmp)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise error_of(exc) from None
    return dest
