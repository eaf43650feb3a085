"""Benchmark: UKI + ISO builds (GRUB, sd-boot, hybrid, Secure Boot); our wall time vs external tools.

Prints, per kind, the total build time, the summed time of external tools and our own share.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import imager_assets as assets

from imagefactory import tools
from imagefactory.imager.iso import IsoInputs, build_iso
from imagefactory.imager.pesign import SecureBootSigner
from imagefactory.imager.uki import build_uki
from imagefactory.platforms import Arch
from imagefactory.profile import OutputKind
from imagefactory.schematic import Bootloader
from imagefactory.versions import TalosVersion

TOOL_SECONDS: list[float] = []


def _timed(run: Callable[..., bytes]) -> Callable[..., bytes]:
    def wrapper(*args: Any, **kwargs: Any) -> bytes:
        start = time.perf_counter()
        try:
            return run(*args, **kwargs)
        finally:
            TOOL_SECONDS.append(time.perf_counter() - start)

    return wrapper


def main() -> None:
    tools.run = _timed(tools.run)  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kernel, initramfs = assets.kernel(work), assets.marker_initramfs(work)
        signer = SecureBootSigner(*assets.self_signed(work, "bench"))
        pcr_key = assets.rsa_key(work, "bench-pcr")
        cases = [
            ("grub", "1.9.0", Bootloader.GRUB, False),
            ("sd-boot", "1.12.0", Bootloader.SD_BOOT, False),
            ("hybrid", "1.11.0", Bootloader.DUAL_BOOT, False),
            ("secureboot", "1.11.0", Bootloader.SD_BOOT, True),
        ]
        print(f"{'kind':<12}{'total s':>9}{'tools s':>9}{'own s':>8}{'own %':>7}")
        for name, version, bootloader, sb in cases:
            TOOL_SECONDS.clear()
            start = time.perf_counter()
            extra: dict[str, Any] = {"signer": signer, "pcr_key": pcr_key} if sb else {}
            uki = build_uki(stub=assets.STUB, kernel=kernel, initramfs=initramfs, cmdline="console=ttyS0",
                            version=TalosVersion.parse(version), arch=Arch.AMD64, out=work / f"{name}.efi",
                            epoch=assets.EPOCH, kind=OutputKind.ISO, **extra)  # fmt: skip
            build_iso(out=work / f"{name}.iso", version=TalosVersion.parse(version), arch=Arch.AMD64,
                      bootloader=bootloader, epoch=assets.EPOCH, secureboot=sb,
                      signer=signer if sb else None,
                      inputs=IsoInputs(kernel, initramfs, "console=ttyS0", uki.path, assets.SD_BOOT))  # fmt: skip
            total = time.perf_counter() - start
            spent = sum(TOOL_SECONDS)
            own = total - spent
            print(f"{name:<12}{total:>9.2f}{spent:>9.2f}{own:>8.2f}{100 * own / total:>6.1f}%")


if __name__ == "__main__":
    main()
