"""The sample overlay image `siderolabs/sbc-raspberrypi`: artifacts, installers and a profile.

Its installers are POSIX sh scripts speaking upstream's overlay installer protocol (YAML on stdin).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from imagefactory.sample import tree
from imagefactory.sample.extensions import blob

REPOSITORY = "siderolabs/sbc-raspberrypi"
TAG = "v0.1.0"
NAME = "rpi_generic"
# Same fixed mtime for every Talos version: the tag names one digest in every catalog (2024-01-01).
OVERLAY_EPOCH = 1704067200

UBOOT_PATH = "arm64/u-boot/rpi_generic/u-boot.bin"
DTB_PATH = "arm64/dtb/broadcom/bcm2711-rpi-4-b.dtb"
UBOOT_SIZE = 4096
# u-boot goes 32 KiB into the disk: after the primary GPT (LBA 0-33), before the first partition
# at `partitionOptions.offset` sectors (2048 = 1 MiB).
UBOOT_OFFSET_SECTORS = 64
PARTITION_OFFSET_SECTORS = 2048


@dataclass(frozen=True)
class Overlay:
    """An overlay as the overlays catalog lists it."""

    name: str
    repository: str
    tag: str


OVERLAY = Overlay(NAME, REPOSITORY, TAG)

# Both installers read YAML from stdin with sed (top-level `key: value` lines only), which is all
# the protocol's flat option documents need; quotes around values are dropped.
_INSTALLER = """\
#!/bin/sh
# Sample overlay installer for Raspberry Pi (@NAME@): speaks the Talos overlay installer protocol.
#   get-options: extra options YAML on stdin -> YAML {name, kernelArgs, partitionOptions}
#   install:     YAML {installDisk, mountPrefix, artifactsPath, extraOptions} on stdin
set -eu

value() {
    # value KEY: the scalar of a top-level `KEY: value` line of the document in $doc.
    printf '%s\\n' "$doc" | sed -n "s/^$1:[[:space:]]*//p" | head -n 1 \\
        | sed -e "s/^[\\"']//" -e "s/[\\"']\\$//"
}

doc=$(cat)
case "${1:-}" in
get-options)
    baud=$(value baudRate)
    baud=${baud:-115200}
    case "$baud" in
    *[!0-9]*) echo "baudRate must be a number, got: $baud" >&2; exit 1 ;;
    esac
    printf '%s\\n' \\
        "name: @NAME@" \\
        "kernelArgs:" \\
        "  - console=tty0" \\
        "  - console=ttyAMA0,$baud" \\
        "  - sysctl.kernel.kexec_load_disabled=1" \\
        "  - talos.dashboard.disabled=1" \\
        "partitionOptions:" \\
        "  offset: @PARTITION_OFFSET@"
    ;;
install)
    disk=$(value installDisk)
    prefix=$(value mountPrefix)
    artifacts=$(value artifactsPath)
    if [ -z "$disk" ] || [ -z "$prefix" ] || [ -z "$artifacts" ]; then
        echo "install needs installDisk, mountPrefix and artifactsPath" >&2
        exit 1
    fi
    dd if="$artifacts/@UBOOT@" of="$disk" bs=512 seek=@UBOOT_OFFSET@ conv=notrunc 2>/dev/null
    mkdir -p "$prefix/boot/EFI/dtb/broadcom"
    cp "$artifacts/@DTB@" "$prefix/boot/EFI/dtb/broadcom/"
    cp "$artifacts/@UBOOT@" "$prefix/boot/EFI/u-boot.bin"
    ;;
*)
    echo "usage: $0 get-options|install (YAML on stdin)" >&2
    exit 2
    ;;
esac
"""


def installer_script(name: str) -> str:
    """The installer executable of one overlay name."""
    return (
        _INSTALLER.replace("@NAME@", name)
        .replace("@UBOOT@", UBOOT_PATH)
        .replace("@DTB@", DTB_PATH)
        .replace("@UBOOT_OFFSET@", str(UBOOT_OFFSET_SECTORS))
        .replace("@PARTITION_OFFSET@", str(PARTITION_OFFSET_SECTORS))
    )


def profile() -> dict[str, object]:
    """profiles/rpi_generic.yaml: an imager base profile for a Raspberry Pi disk image."""
    return {
        "arch": "arm64",
        "platform": "metal",
        "secureboot": False,
        "output": {
            "kind": "image",
            "outFormat": ".xz",
            "imageOptions": {"diskSize": 1306525696, "diskFormat": "raw"},
        },
    }


def dtb() -> bytes:
    """A device-tree-like blob: the FDT magic and total size, then filler."""
    body = blob("bcm2711-rpi-4-b.dtb", 1024)
    return bytes.fromhex("d00dfeed") + (len(body) + 8).to_bytes(4, "big") + body


def overlay_entries() -> list[tree.Entry]:
    """The overlay image root: artifacts/, installers/, profiles/."""
    script = installer_script(NAME)
    return [
        tree.file(f"artifacts/{UBOOT_PATH}", blob("u-boot rpi_generic", UBOOT_SIZE)),
        tree.file(f"artifacts/{DTB_PATH}", dtb()),
        tree.file("installers/default", script, 0o755),
        tree.file(f"installers/{NAME}", script, 0o755),
        tree.file(f"profiles/{NAME}.yaml", yaml.safe_dump(profile(), sort_keys=False)),
    ]


def overlay_layers(arches: Iterable[str], work: Path) -> dict[str, list[Path]]:
    """One layer, identical for every platform (the installers are scripts)."""
    root = tree.materialize(overlay_entries(), work / "overlay-rpi", OVERLAY_EPOCH)
    return {arch: [root] for arch in sorted(arches)}
