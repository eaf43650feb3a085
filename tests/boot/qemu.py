"""Boot an image under qemu (TCG) and watch the serial console until a marker or a failure shows.

Reads the console line by line and stops qemu as soon as the outcome is known; never sleeps.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
OVMF_CODE_SNAKEOIL = Path("/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd")
OVMF_VARS_SNAKEOIL = Path("/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd")
MARKER = re.compile(r"BOOT-OK (?P<cmdline>.*)")
FAILURES = (
    "Kernel panic",
    "Access Denied",
    "Security Violation",
    "Shell> ",
    "No bootable device",
)
DEFAULT_TIMEOUT = 180.0


@dataclass(frozen=True)
class BootResult:
    ok: bool
    cmdline: str | None
    failure: str | None
    seconds: float
    log: str


def uefi_args(workdir: Path, *, secure: bool = False) -> list[str]:
    """q35 + OVMF pflash with a private VARS copy (snakeoil keys enrolled when `secure`)."""
    code, vars_template = (
        (OVMF_CODE_SNAKEOIL, OVMF_VARS_SNAKEOIL) if secure else (OVMF_CODE, OVMF_VARS)
    )
    vars_copy = workdir / f"vars-{os.getpid()}-{time.monotonic_ns()}.fd"
    shutil.copyfile(vars_template, vars_copy)
    machine = "q35,smm=on" if secure else "q35"
    args = ["-machine", machine]
    if secure:
        args += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    return [
        *args,
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
    ]  # fmt: skip


def boot(
    args: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, marker: re.Pattern[str] = MARKER
) -> BootResult:
    """Run qemu-system-x86_64 with `args`; return at the marker, a failure, exit or timeout.

    `cmdline` of the result is the marker's `cmdline` group, or the whole marker line.
    """
    argv = [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-nographic",
        "-no-reboot",
        "-m", "512",
        "-nic", "none",
        *args,
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer, lines = b"", []
    cmdline: str | None = None
    failure: str | None = None
    try:
        while cmdline is None and failure is None:
            remaining = timeout - (time.monotonic() - start)
            if remaining <= 0:
                failure = f"timeout after {timeout:.0f} s"
                break
            if not selector.select(timeout=remaining):
                continue
            chunk = proc.stdout.read()
            if not chunk:
                failure = f"qemu exited with {proc.wait()}"
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace").replace("\r", "")
                match = marker.search(line)
                if match:
                    cmdline = match.groupdict().get("cmdline", match.group(0)).strip()
                    break
                failure = next((f for f in FAILURES if f in line), None)
                if failure is not None:
                    break
            # A prompt such as "Shell> " has no newline: look at the partial line too.
            partial = buffer.decode("utf-8", "replace")
            if cmdline is None and failure is None:
                failure = next((f for f in FAILURES if f in partial), None)
            lines += [c.decode("utf-8", "replace") for c in complete]
    finally:
        selector.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    log = "\n".join([*lines, buffer.decode("utf-8", "replace")])
    return BootResult(cmdline is not None, cmdline, failure, time.monotonic() - start, log)
