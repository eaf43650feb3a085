"""The static tree's paths and iPXE scripts match upstream's bytes."""

from __future__ import annotations

import pytest

from imagefactory import tree

ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
METAL_CMDLINE = (
    "talos.platform=metal console=ttyS0 console=tty0 init_on_alloc=1 slab_nomerge pti=on "
    "consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng "
    "ima_appraise=fix ima_hash=sha512"
)


def test_pxe_script_matches_upstream_integration_expectation() -> None:
    script = tree.pxe_script(
        "http://ENDPOINT/", ID, "1.10.0", "metal", "amd64", secureboot=False, cmdline=METAL_CMDLINE
    )
    assert (
        script
        == (
            f"#!ipxe\n\nimgfree\nkernel http://ENDPOINT/image/{ID}/v1.10.0/kernel-amd64 {METAL_CMDLINE}\n"
            f"initrd http://ENDPOINT/image/{ID}/v1.10.0/initramfs-amd64.xz\nboot\n"
        ).encode()
    )


def test_secureboot_pxe_script_boots_the_uki_with_its_cmdline() -> None:
    script = tree.pxe_script(
        "http://h", ID, "v1.10.0", "metal", "amd64", secureboot=True, cmdline="a=b"
    )
    assert (
        script
        == (
            f"#!ipxe\n\nimgfree\nkernel http://h/image/{ID}/v1.10.0/metal-amd64-secureboot-uki.efi a=b\n"
            "boot\n"
        ).encode()
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("metal-amd64.iso", "application/x-iso9660-image"),
        ("metal-amd64-uki.efi", "application/efi"),
        ("initramfs-amd64.xz", "application/x-xz"),
        ("gcp-amd64.raw.tar.gz", "application/gzip"),
        ("openstack-amd64.qcow2", "application/x-qemu-disk"),
        ("installer-amd64.tar", "application/x-tar"),
        ("metal-amd64.raw.zst", "application/octet-stream"),
        ("kernel-amd64", "application/octet-stream"),
    ],
)
def test_content_types_follow_upstream(name: str, expected: str) -> None:
    assert tree.content_type(name) == expected


def test_paths_carry_the_v_tag() -> None:
    assert tree.image_path(ID, "1.11.5", "kernel-amd64") == f"image/{ID}/v1.11.5/kernel-amd64"
    assert tree.pxe_path(ID, "v1.11.5", "metal-amd64") == f"pxe/{ID}/v1.11.5/metal-amd64"
    assert tree.extensions_path("1.11.5") == "version/v1.11.5/extensions/official"
    assert tree.overlays_path("v1.11.5") == "version/v1.11.5/overlays/official"
    assert tree.schematic_path(ID) == f"schematics/{ID}"
    assert tree.checksum_line("ab", "x.iso") == "ab  x.iso\n"
