"""Trees of the sample `siderolabs/imager` image: boot assets under usr/install/<arch>/.

The initramfs is `cpio(newc){init, rootfs.sqsh, busybox}` compressed as the version's imager does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imagefactory.platforms import Arch
from imagefactory.sample import tree
from imagefactory.sample.debian import DebianParts
from imagefactory.sample.init import init_script
from imagefactory.sample.versions import SampleVersion

INSTALL_DIR = "usr/install"


@dataclass(frozen=True)
class ArchAssets:
    """The four boot assets of one architecture, as files on disk."""

    arch: Arch
    vmlinuz: Path
    initramfs: Path
    sd_stub: Path
    sd_boot: Path


def rootfs_entries(version: SampleVersion, parts: DebianParts) -> list[tree.Entry]:
    """rootfs.sqsh content: the kernel's module indexes at the version's modules path."""
    modules = f"{version.modules_path}/{parts.kernel_version}"
    os_release = (
        'NAME="Talos (sample)"\n'
        "ID=talos\n"
        f"VERSION_ID={version.tag}\n"
        f'PRETTY_NAME="Talos ({version.tag}, sample release)"\n'
    )
    return [
        tree.file("etc/os-release", os_release),
        *(tree.copy(f"{modules}/{index.name}", index) for index in parts.module_indexes),
    ]


def initramfs_entries(version: SampleVersion, parts: DebianParts, rootfs: Path) -> list[tree.Entry]:
    return [
        tree.file("init", init_script(version.tag, parts.arch), 0o755),
        tree.copy("rootfs.sqsh", rootfs),
        tree.copy("bin/busybox", parts.busybox, 0o755),
        tree.symlink("bin/sh", "busybox"),
        # Mount points for the init's proc, sysfs and devtmpfs.
        tree.directory("dev"),
        tree.directory("proc"),
        tree.directory("sys"),
    ]


def build_assets(version: SampleVersion, parts: DebianParts, work: Path) -> ArchAssets:
    """Build rootfs.sqsh and initramfs.xz of one architecture under work/."""
    epoch = version.source_date_epoch
    work.mkdir(parents=True, exist_ok=True)
    rootfs_tree = tree.materialize(rootfs_entries(version, parts), work / "rootfs", epoch)
    rootfs = tree.mksquashfs(
        rootfs_tree, work / "rootfs.sqsh", version.quirks.squashfs_compression_args, epoch
    )
    ird = tree.materialize(initramfs_entries(version, parts, rootfs), work / "initramfs", epoch)
    cpio = tree.cpio_newc(ird, work / "initramfs.cpio", epoch)
    # Named .xz whatever the compression, as upstream's imager names it.
    initramfs = tree.compress(cpio, work / "initramfs.xz", version.compression)
    if version.quirks.uki_profiles:
        return ArchAssets(
            parts.arch, parts.vmlinuz, initramfs, parts.sd_stub_257, parts.sd_boot_257
        )
    return ArchAssets(parts.arch, parts.vmlinuz, initramfs, parts.sd_stub, parts.sd_boot)


def install_entries(assets: ArchAssets, *, uefi: bool = True) -> list[tree.Entry]:
    """usr/install/<arch>/ files; `uefi` adds the systemd-boot stub and loader."""
    base = f"{INSTALL_DIR}/{assets.arch}"
    entries = [
        tree.copy(f"{base}/vmlinuz", assets.vmlinuz),
        tree.copy(f"{base}/initramfs.xz", assets.initramfs),
    ]
    if uefi:
        entries += [
            tree.copy(f"{base}/systemd-stub.efi", assets.sd_stub),
            tree.copy(f"{base}/systemd-boot.efi", assets.sd_boot),
        ]
    return entries


INSTALLER_SCRIPT = """\
#!/bin/sh
# Talos sample installer: reports its version, arguments and assets; the sample installs nothing.
case "${0##*/}" in
imager)
    echo "TALOS-SAMPLE imager @VERSION@: a sample image; build assets with imagefactory" >&2
    exit 1
    ;;
esac
echo "TALOS-SAMPLE installer: @VERSION@ $*"
case "$(uname -m)" in aarch64) arch=arm64 ;; *) arch=amd64 ;; esac
prev=
for a in "$@"; do
    [ "$prev" = --arch ] && arch=$a
    case "$a" in --arch=*) arch=${a#--arch=} ;; esac
    prev=$a
done
# Like upstream's `install`, fail when the image lacks the assets this version installs.
if [ "$1" = install ]; then
    need="@ASSETS@"
    # Secure Boot installers before 1.10 carry a signed UKI instead.
    [ -f "/usr/install/$arch/vmlinuz.efi.signed" ] && need="vmlinuz.efi.signed systemd-boot.efi"
    for f in $need; do
        if [ ! -f "/usr/install/$arch/$f" ]; then
            echo "error: open /usr/install/$arch/$f: no such file or directory" >&2
            exit 1
        fi
    done
fi
for f in /usr/install/*/*; do
    [ -f "$f" ] && echo "TALOS-SAMPLE asset: $f"
done
exit 0
"""


def tools_entries(version: SampleVersion, parts: DebianParts) -> list[tree.Entry]:
    """The tools layer shared by imager and installer images: busybox and bin/installer."""
    # From 1.10 (and for Secure Boot) the installer installs a UKI with systemd-boot.
    installs = "vmlinuz initramfs.xz"
    if version.quirks.unified_installer:
        installs = "vmlinuz.efi systemd-boot.efi"
    script = INSTALLER_SCRIPT.replace("@VERSION@", version.tag).replace("@ASSETS@", installs)
    return [
        tree.copy("bin/busybox", parts.busybox, 0o755),
        tree.symlink("bin/sh", "busybox"),
        tree.file("bin/installer", script, 0o755),
        tree.symlink("bin/imager", "installer"),
    ]


def image_config(version: SampleVersion, entrypoint: str) -> dict[str, object]:
    """Image config fields of upstream's imager and installer images."""
    return {
        "Env": ["PATH=/bin", f"VERSION={version.tag}"],
        "Entrypoint": [entrypoint],
        "Labels": {"alpha.talos.dev/version": version.tag},
    }


def imager_layers(
    version: SampleVersion,
    parts: Mapping[Arch, DebianParts],
    assets: Mapping[Arch, ArchAssets],
    work: Path,
) -> dict[str, list[Path]]:
    """Layer trees per platform: its own tools, then the assets of every arch.

    Like upstream's install-artifacts-all, each platform carries all arches, so an amd64 host
    builds arm64 assets; the shared assets layer has one digest.
    """
    epoch = version.source_date_epoch
    every = [entry for arch in sorted(assets) for entry in install_entries(assets[arch])]
    shared = tree.materialize(every, work / "imager-assets", epoch)
    layers: dict[str, list[Path]] = {}
    for arch in sorted(parts):
        tools = tree.materialize(tools_entries(version, parts[arch]), work / f"tools-{arch}", epoch)
        layers[str(arch)] = [tools, shared]
    return layers
