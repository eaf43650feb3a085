"""Debian parts of the sample release: .debs fetched with apt-get download, cached, and unpacked.

Only the few files the sample needs are kept from each package, so re-runs read a small cache.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import BuildError
from imagefactory.platforms import Arch  # Talos arch names are Debian arch names too
from imagefactory.sample import suite

SMALL_MODULE = "kernel/drivers/net/dummy.ko"
MODULE_INDEXES = ("modules.order", "modules.builtin", "modules.builtin.modinfo")
PACKAGES = ("busybox-static", "systemd-boot-efi")  # besides the kernel
# Talos's imager ships systemd 257 from 1.10, whose stub boots a multi-profile UKI's main profile
# (Debian 12's 252 takes the last .cmdline); Debian 13 (trixie) has 257.
MULTIPROFILE_SUITE = "trixie"
MULTIPROFILE_PACKAGE = "systemd-boot-efi"


@dataclass(frozen=True)
class DebianParts:
    """The files of one architecture taken from Debian packages."""

    arch: Arch
    kernel_version: str
    vmlinuz: Path
    module_indexes: tuple[Path, ...]  # modules.order, modules.builtin, modules.builtin.modinfo
    small_module: Path  # a real .ko of the same kernel
    busybox: Path
    sd_stub: Path
    sd_boot: Path
    sd_stub_257: Path  # trixie's, for versions from 1.10
    sd_boot_257: Path
    packages: tuple[str, ...]  # .deb file names, for provenance


def cache_dir() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/imagefactory/debs`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagefactory" / "debs"


def _deb_file_name(package: str, version: str, arch: Arch) -> str:
    # apt-get download writes the epoch colon URL-encoded.
    return f"{package}_{version.replace(':', '%3a')}_{arch}.deb"


def _unknown_package(name: str, arch: Arch) -> BuildError:
    hint = (
        " (run `dpkg --add-architecture arm64 && apt-get update` once, as scripts/setup does)"
        if arch is Arch.ARM64
        else " (run `apt-get update`)"
    )
    return BuildError(f"apt knows no package {name} and none is cached{hint}")


@functools.cache
def _apt(argv: tuple[str, ...]) -> str:
    """Output of an apt-cache query ('' when it fails); asked once per process (about 1 s each)."""
    try:
        return tools.run(["apt-cache", *argv]).decode("utf-8", "replace")
    except BuildError:
        return ""


def _candidate_versions(names: Sequence[str]) -> dict[str, str]:
    """`pkg:arch` -> the version apt would download, for the names apt knows."""
    out = _apt(("show", "--no-all-versions", *names))
    if not out and len(names) > 1:
        # apt-cache stops at the first unknown name; ask one by one to learn which.
        return {k: v for name in names for k, v in _candidate_versions([name]).items()}
    versions: dict[str, str] = {}
    for stanza in out.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Architecture|Version): (\S+)$", stanza, re.MULTILINE))
        if {"Package", "Architecture", "Version"} <= fields.keys():
            versions[f"{fields['Package']}:{fields['Architecture']}"] = fields["Version"]
    return versions


def kernel_packages(arches: Sequence[Arch], cache: Path) -> dict[Arch, str]:
    """The versioned kernel package behind Debian's linux-image-<arch> metapackage, per arch."""
    out = _apt(("depends", *(f"linux-image-{arch}:{arch}" for arch in arches)))
    found: dict[Arch, str] = {}
    for arch in arches:
        match = re.search(rf"Depends: (linux-image-\d\S*-{arch})(:{arch})?$", out, re.MULTILINE)
        if match is not None:
            found[arch] = match.group(1)
            continue
        # Offline or without apt lists: the newest kernel a previous run cached.
        cached = sorted(
            p.name.split("_", 1)[0] for p in cache.glob(f"linux-image-*-{arch}_*_{arch}.deb")
        )
        if not cached:
            raise _unknown_package(f"linux-image-{arch}:{arch}", arch)
        found[arch] = cached[-1]
    return found


def fetch_deb(package: str, arch: Arch, version: str | None, cache: Path) -> Path:
    """The .deb of package:arch at apt's candidate `version`, downloaded once into cache.

    With no version (apt does not know the package), the newest cached .deb is used.
    """
    cache.mkdir(parents=True, exist_ok=True)
    name = f"{package}:{arch}"
    if version is None:
        cached = sorted(cache.glob(f"{package}_*_{arch}.deb"))
        if not cached:
            raise _unknown_package(name, arch)
        return cached[-1]
    wanted = cache / _deb_file_name(package, version, arch)
    if wanted.is_file():
        return wanted
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        tools.run(["apt-get", "download", "-q", f"{name}={version}"], cwd=Path(tmp))
        got = Path(tmp) / wanted.name
        if not got.is_file():
            raise BuildError(f"apt-get download {name} did not write {got.name}")
        os.replace(got, wanted)
    return wanted


def multiprofile_debs(arches: Sequence[Arch], cache: Path) -> dict[Arch, Path]:
    """trixie's systemd-boot-efi per arch, downloaded once (from the machine's mirror) into cache."""
    cache.mkdir(parents=True, exist_ok=True)

    def cached(arch: Arch) -> list[Path]:
        return sorted(cache.glob(f"{MULTIPROFILE_PACKAGE}_257*_{arch}.deb"))

    missing = [arch for arch in arches if not cached(arch)]
    if missing:
        with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
            names = [f"{MULTIPROFILE_PACKAGE}:{arch}" for arch in missing]
            suite.download(MULTIPROFILE_SUITE, names, Path(tmp))
            for deb in Path(tmp).glob("*.deb"):
                os.replace(deb, cache / deb.name)
    found = {}
    for arch in arches:
        debs = cached(arch)
        if not debs:
            raise BuildError(f"no {MULTIPROFILE_PACKAGE} 257 for {arch} from {MULTIPROFILE_SUITE}")
        found[arch] = debs[-1]
    return found


def extract_members(deb: Path, members: dict[str, str], cache: Path) -> Path:
    """Unpack deb once and keep only `members` (path in package -> name kept); return their dir.

    The kept files land in `cache/extracted/<deb name>/`, renamed into place when complete.
    """
    dest = cache / "extracted" / deb.stem
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack-") as tmp:
        unpacked = Path(tmp) / "root"
        kept = Path(tmp) / "kept"
        kept.mkdir()
        tools.run(["dpkg-deb", "-x", deb, unpacked])
        for member, name in members.items():
            source = unpacked / member
            if not source.is_file():
                raise BuildError(f"{deb.name} has no file {member}")
            shutil.copyfile(source, kept / name)
        try:
            os.replace(kept, dest)
        except OSError:
            # Another process finished the same extraction first; theirs is as good.
            if not dest.is_dir():
                raise
    return dest


def all_debian_parts(arches: Sequence[Arch], cache: Path | None = None) -> dict[Arch, DebianParts]:
    """Fetch (or reuse) the kernel, busybox and systemd-boot parts of each architecture."""
    cache = cache or cache_dir()
    kernels = kernel_packages(arches, cache)
    wanted = [(kernels[arch], arch) for arch in arches]
    wanted += [(package, arch) for arch in arches for package in PACKAGES]
    versions = _candidate_versions([f"{pkg}:{arch}" for pkg, arch in wanted])
    debs = {
        (pkg, arch): fetch_deb(pkg, arch, versions.get(f"{pkg}:{arch}"), cache)
        for pkg, arch in wanted
    }
    multiprofile = multiprofile_debs(arches, cache)
    parts = {}
    for arch in arches:
        kpkg = kernels[arch]
        kver = kpkg.removeprefix("linux-image-")
        module_dir = f"lib/modules/{kver}"
        kernel = extract_members(
            debs[(kpkg, arch)],
            {
                f"boot/vmlinuz-{kver}": "vmlinuz",
                f"{module_dir}/{SMALL_MODULE}": Path(SMALL_MODULE).name,
                **{f"{module_dir}/{name}": name for name in MODULE_INDEXES},
            },
            cache,
        )
        busybox = extract_members(debs[("busybox-static", arch)], {"bin/busybox": "busybox"}, cache)
        efi = "usr/lib/systemd/boot/efi"
        efi_members = {
            f"{efi}/linux{arch.efi_suffix}.efi.stub": "systemd-stub.efi",
            f"{efi}/systemd-boot{arch.efi_suffix}.efi": "systemd-boot.efi",
        }
        sdboot = extract_members(debs[("systemd-boot-efi", arch)], efi_members, cache)
        sdboot_257 = extract_members(multiprofile[arch], efi_members, cache)
        parts[arch] = DebianParts(
            arch=arch,
            kernel_version=kver,
            vmlinuz=kernel / "vmlinuz",
            module_indexes=tuple(kernel / name for name in MODULE_INDEXES),
            small_module=kernel / Path(SMALL_MODULE).name,
            busybox=busybox / "busybox",
            sd_stub=sdboot / "systemd-stub.efi",
            sd_boot=sdboot / "systemd-boot.efi",
            sd_stub_257=sdboot_257 / "systemd-stub.efi",
            sd_boot_257=sdboot_257 / "systemd-boot.efi",
            packages=tuple(
                sorted(
                    [multiprofile[arch].name, *(debs[(p, a)].name for p, a in wanted if a is arch)]
                )
            ),
        )
    return parts


def debian_parts(arch: Arch, cache: Path | None = None) -> DebianParts:
    """The parts of one architecture (see all_debian_parts)."""
    return all_debian_parts([arch], cache)[arch]
