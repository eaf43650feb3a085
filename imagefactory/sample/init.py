"""The busybox `init` of the sample initramfs, and the parser of the markers it prints.

At boot it reports what a test needs on the serial console, one `TALOS-SAMPLE` line each, then powers off.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from dataclasses import dataclass

from imagefactory.errors import InvalidInput

MARKER = "TALOS-SAMPLE"
# Logged at info level after the init quiets the console: it must never show on it.
QUIET_PROBE = f"{MARKER}-QUIET probe"

# Busybox applets only: the initramfs holds nothing but bin/busybox and bin/sh.
# Run as PID 1 it reads the real root and writes to the consoles; run by hand as `init ROOT`
# (not PID 1) it reads ROOT and writes to stdout, which is how the tests exercise the same logic.
_TEMPLATE = """\
#!/bin/sh
# Talos sample init: prints TALOS-SAMPLE marker lines on the serial console, then powers off.
version=@VERSION@
arch=@ARCH@
serial=
if [ "$$" = 1 ]; then
    bb=/bin/busybox
    root=
    $bb mount -t proc proc /proc
    $bb mount -t sysfs sysfs /sys
    $bb mount -t devtmpfs devtmpfs /dev 2>/dev/null
    # Late kernel messages (clocksource, RNG) would land inside a marker line on the shared
    # console; from here on only emergencies reach it.
    echo 1 > /proc/sys/kernel/printk
    # A probe the boot tests look for: on the console only if the line above had no effect.
    echo "<6>@MARKER@-QUIET probe" > /dev/kmsg
    # Write to ttyS0 too, unless it already is the console (no line twice); clocal keeps
    # the open from waiting for a carrier that an absent cable never raises.
    if [ -c /dev/ttyS0 ] && ! $bb grep -qw ttyS0 /sys/class/tty/console/active 2>/dev/null \\
        && $bb stty -F /dev/ttyS0 clocal 2>/dev/null; then
        serial=/dev/ttyS0
    fi
else
    bb=busybox
    root=${1:?usage: init ROOT}
fi

emit() {
    if [ "$$" = 1 ]; then
        echo "@MARKER@ $*" > /dev/console
        if [ -n "$serial" ]; then echo "@MARKER@ $*" > "$serial"; fi
    else
        echo "@MARKER@ $*"
    fi
}

emit "version: $version $arch"
emit "cmdline: $($bb cat "$root/proc/cmdline")"
if [ -f "$root/extensions.yaml" ]; then
    emit "extensions.yaml: $($bb base64 -w 0 "$root/extensions.yaml")"
else
    emit "extensions.yaml: none"
fi
for f in "$root"/*.sqsh; do
    [ -f "$f" ] || continue
    set -- $($bb sha256sum "$f")
    emit "sqsh: ${f##*/} $1"
done
for f in "$root"/kernel/x86/microcode/*; do
    [ -f "$f" ] || continue
    emit "microcode: ${f#"$root"} $($bb stat -c %s "$f")"
done
emit "done"
if [ "$$" = 1 ]; then
    $bb poweroff -f
    while :; do $bb sleep 60; done
fi
"""


def init_script(version: str, arch: str) -> bytes:
    """The `init` of one version and architecture."""
    text = (
        _TEMPLATE.replace("@VERSION@", shlex.quote(version))
        .replace("@ARCH@", shlex.quote(arch))
        .replace("@MARKER@", MARKER)
    )
    return text.encode()


@dataclass(frozen=True)
class BootReport:
    """What the sample init printed, parsed from a serial log."""

    version: str | None = None
    arch: str | None = None
    cmdline: str | None = None
    extensions_yaml: bytes | None = None  # None: the initramfs had no /extensions.yaml
    sqsh: tuple[tuple[str, str], ...] = ()  # (file name, sha256 hex), in printed order
    microcode: tuple[tuple[str, int], ...] = ()  # (path, size)
    done: bool = False


_LINE_RE = re.compile(rf"{MARKER} ([a-z.]+): ?(.*)$")
_SQSH_RE = re.compile(r"^(\S+\.sqsh) ([0-9a-f]{64})$")
_MICROCODE_RE = re.compile(r"^(/\S+) (\d+)$")
_VERSION_RE = re.compile(r"^(\S+) (\S+)$")


def parse_markers(log: str | bytes) -> BootReport:
    """Parse the marker lines of a serial log; other lines (kernel messages) are ignored.

    A line seen twice (console and ttyS0 both captured) counts once.
    """
    text = log.decode("utf-8", "replace") if isinstance(log, bytes) else log
    fields: dict[str, object] = {}
    sqsh: dict[str, str] = {}
    microcode: dict[str, int] = {}
    done = False
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if f"{MARKER} done" in line and line.endswith(f"{MARKER} done"):
            done = True
            continue
        match = _LINE_RE.search(line)
        if match is None:
            continue
        key, value = match.groups()
        if key == "version":
            parts = _VERSION_RE.match(value)
            if parts is None:
                raise InvalidInput(f"malformed marker line: {line!r}")
            fields["version"], fields["arch"] = parts.groups()
        elif key == "cmdline":
            fields["cmdline"] = value.strip()
        elif key == "extensions.yaml":
            fields["extensions_yaml"] = _decode_extensions(value, line)
        elif key == "sqsh":
            parts = _SQSH_RE.match(value)
            if parts is None:
                raise InvalidInput(f"malformed marker line: {line!r}")
            sqsh.setdefault(parts.group(1), parts.group(2))
        elif key == "microcode":
            parts = _MICROCODE_RE.match(value)
            if parts is None:
                raise InvalidInput(f"malformed marker line: {line!r}")
            microcode.setdefault(parts.group(1), int(parts.group(2)))
    return BootReport(
        version=_str_or_none(fields.get("version")),
        arch=_str_or_none(fields.get("arch")),
        cmdline=_str_or_none(fields.get("cmdline")),
        extensions_yaml=_bytes_or_none(fields.get("extensions_yaml")),
        sqsh=tuple(sqsh.items()),
        microcode=tuple(microcode.items()),
        done=done,
    )


def _decode_extensions(value: str, line: str) -> bytes | None:
    value = value.strip()
    if value == "none":
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"malformed marker line (bad base64): {line!r}") from exc


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _bytes_or_none(value: object) -> bytes | None:
    return value if isinstance(value, bytes) else None
