"""The static tree's URL paths, content types and iPXE scripts: upstream's, declared once.

The pipeline writes these paths, the server serves them, the web UI links to them.
"""

from __future__ import annotations

import posixpath

from imagefactory.versions import TalosVersion

VERSIONS = "versions"
SIGNING_KEY = "oci/cosign/signing-key.pub"
SECUREBOOT_CERT = "secureboot/signing-cert.pem"
# Beside every published file: upstream's checksum files, and our detached signature.
CHECKSUM_SUFFIXES = (".sha256", ".sha512")
SIGNATURE_SUFFIX = ".sig"
SIDECAR_SUFFIXES = (*CHECKSUM_SUFFIXES, SIGNATURE_SUFFIX)

# Upstream's image handler: these by extension, else Go's mime table, else octet-stream.
CONTENT_TYPES = {
    ".efi": "application/efi",
    ".iso": "application/x-iso9660-image",
    ".xz": "application/x-xz",
    ".gz": "application/gzip",
    ".qcow2": "application/x-qemu-disk",
    ".tar": "application/x-tar",
    ".sha256": "text/plain; charset=utf-8",
    ".sha512": "text/plain; charset=utf-8",
}
OCTET_STREAM = "application/octet-stream"
# The web UI the pipeline renders into the tree: index.html and ui/.
UI_INDEX = "index.html"
UI_DIR = "ui"
UI_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
PEM = "application/x-pem-file"


def vtag(version: TalosVersion | str) -> str:
    """The version as upstream writes it in URLs: with its `v`."""
    text = str(version)
    return text if text.startswith("v") else f"v{text}"


def image_path(schematic_id: str, version: TalosVersion | str, asset: str) -> str:
    return posixpath.join("image", schematic_id, vtag(version), asset)


def pxe_path(schematic_id: str, version: TalosVersion | str, platform_arch: str) -> str:
    return posixpath.join("pxe", schematic_id, vtag(version), platform_arch)


def schematic_path(schematic_id: str) -> str:
    return posixpath.join("schematics", schematic_id)


def extensions_path(version: TalosVersion | str) -> str:
    return posixpath.join("version", vtag(version), "extensions", "official")


def overlays_path(version: TalosVersion | str) -> str:
    return posixpath.join("version", vtag(version), "overlays", "official")


def content_type(name: str) -> str:
    """The Content-Type upstream's image handler answers for an asset named `name`."""
    _, ext = posixpath.splitext(name)
    return CONTENT_TYPES.get(ext, OCTET_STREAM)


def ui_content_type(name: str) -> str:
    _, ext = posixpath.splitext(name)
    return UI_CONTENT_TYPES.get(ext, OCTET_STREAM)


def checksum_line(hex_digest: str, name: str) -> str:
    """One line of a `.sha256`/`.sha512` file, as sha256sum writes it (two spaces, newline)."""
    return f"{hex_digest}  {name}\n"


def pxe_script(
    base_url: str,
    schematic_id: str,
    version: TalosVersion | str,
    platform: str,
    arch: str,
    *,
    secureboot: bool,
    cmdline: str,
) -> bytes:
    """Upstream's iPXE script (the `imgfree` form, image-factory >= v0.6.6), byte for byte."""
    base = base_url.rstrip("/")

    def url(asset: str) -> str:
        return f"{base}/{image_path(schematic_id, version, asset)}"

    if secureboot:
        uki = url(f"{platform}-{arch}-secureboot-uki.efi")
        return f"#!ipxe\n\nimgfree\nkernel {uki} {cmdline}\nboot\n".encode()
    kernel = url(f"kernel-{arch}")
    initramfs = url(f"initramfs-{arch}.xz")
    return f"#!ipxe\n\nimgfree\nkernel {kernel} {cmdline}\ninitrd {initramfs}\nboot\n".encode()
