"""iPXE: upstream's /pxe scripts over HTTP, and the chain scripts the TFTP server hands out.

A TFTP client gets `boot.ipxe`, which tries `mac-<aa-bb-..>.ipxe` (a host from the config) and
otherwise chains the default target's HTTP /pxe script; iPXE's ${buildarch} picks the arch.
"""

from __future__ import annotations

from imagefactory import tree
from imagefactory.config import PxeTarget, ServerSettings
from imagefactory.profile import parse_arch, parse_asset_path

DEFAULT_SCRIPT = "boot.ipxe"
# iPXE binaries from Debian's ipxe package that the TFTP server offers.
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


def split_platform_arch(platform_arch: str) -> tuple[str, str, bool]:
    """`metal-x86_64-secureboot` -> (metal, amd64, True), with upstream's errors."""
    request = parse_asset_path(f"cmdline-{platform_arch}")
    return request.platform, parse_arch(request.arch.value).value, request.secureboot


def mac_script_name(mac: str) -> str:
    """The name iPXE asks for with `mac-${mac:hexhyp}.ipxe`."""
    return f"mac-{mac.replace(':', '-')}.ipxe"


def _chain(base_url: str, target: PxeTarget) -> bytes:
    url = (
        base_url.rstrip("/")
        + "/"
        + tree.pxe_path(target.schematic, target.version, f"{target.platform}-${{buildarch}}")
    )
    return f"#!ipxe\n\nchain --replace --autofree {url}\n".encode()


def chain_scripts(settings: ServerSettings, base_url: str) -> dict[str, bytes]:
    """File name -> bytes of every generated chain script."""
    scripts = {mac_script_name(mac): _chain(base_url, t) for mac, t in settings.pxe_hosts}
    default = settings.pxe_default
    fallback = _chain(base_url, default).split(b"\n", 2)[2] if default else b"exit 1\n"
    scripts[DEFAULT_SCRIPT] = b"#!ipxe\n\nchain --autofree mac-${mac:hexhyp}.ipxe ||\n" + fallback
    return scripts
