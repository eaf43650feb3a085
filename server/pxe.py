"""iPXE: upstream's /pxe scripts over HTTP, and the chain scripts the TFTP server hands out.

A TFTP client gets `boot.ipxe`, which tries `mac-<aa-bb-..>.ipxe` (a host from the config) and
otherwise chains the default target's HTTP /pxe script; iPXE's ${buildarch} picks the arch.
"""

from __future__ import annotations

import os
from functools import lru_cache

from imagefactory import tree
from imagefactory.config import PxeTarget, ServerSettings
from imagefactory.profile import parse_arch, parse_asset_path
from server.web import FileIdentity, file_identity

DEFAULT_SCRIPT = "boot.ipxe"
# iPXE binaries from Debian's ipxe package that the TFTP server offers.
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")
SCRIPT_CACHE = 10_000


class ScriptCache:
    """/pxe scripts by (schematic, version, platform-arch), each kept with the identity of the
    cmdline file it was made from: a generation switch or a rebuild names another file (or a new
    inode under the same name), which makes the script again."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._scripts: dict[tuple[str, str, str], tuple[FileIdentity, bytes]] = {}

    def script(
        self,
        schematic_id: str,
        version: str,
        platform: str,
        arch: str,
        *,
        secureboot: bool,
        cmdline_file: str,
    ) -> tuple[bytes, FileIdentity]:
        """The script, and the identity of the cmdline file it was made from."""
        key = (schematic_id, version, f"{platform}-{arch}{'-secureboot' if secureboot else ''}")
        path = cmdline_file
        cached = self._scripts.get(key)
        if cached is not None and cached[0] == file_identity(path, os.stat(path)):
            return cached[1], cached[0]
        with open(path, "rb") as handle:  # identity and bytes from the same open file
            identity = file_identity(path, os.fstat(handle.fileno()))
            cmdline = handle.read().decode().strip()
        made = tree.pxe_script(
            self.base_url,
            schematic_id,
            version,
            platform,
            arch,
            secureboot=secureboot,
            cmdline=cmdline,
        )
        if len(self._scripts) >= SCRIPT_CACHE:
            self._scripts.clear()
        self._scripts[key] = (identity, made)
        return made, identity


@lru_cache(maxsize=1024)
def split_platform_arch(platform_arch: str) -> tuple[str, str, bool, str]:
    """`metal-x86_64-secureboot` -> (metal, amd64, True, cmdline-metal-amd64-secureboot): the parts
    and the name of the cmdline asset the script reads, with upstream's errors."""
    request = parse_asset_path(f"cmdline-{platform_arch}")
    arch = parse_arch(request.arch.value).value
    suffix = "-secureboot" if request.secureboot else ""
    return request.platform, arch, request.secureboot, f"cmdline-{request.platform}-{arch}{suffix}"


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
