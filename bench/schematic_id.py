"""Benchmark: schematics per second for parse + canonicalize + hash on one core.

Usage: python bench/schematic_id.py [SECONDS]
"""

from __future__ import annotations

import sys
import time

from imagefactory.schematic import parse_schematic

# Realistic: five extensions, three kernel args, one META value (as a typical user schematic).
SCHEMATIC = b"""customization:
    extraKernelArgs:
        - console=ttyS0
        - net.ifnames=0
        - talos.dashboard.disabled=1
    meta:
        - key: 10
          value: '{"externalIPs": ["192.0.2.10"], "hostname": "node-1"}'
    systemExtensions:
        officialExtensions:
            - siderolabs/gvisor
            - siderolabs/intel-ucode
            - siderolabs/iscsi-tools
            - siderolabs/qemu-guest-agent
            - siderolabs/util-linux-tools
"""


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    expected = parse_schematic(SCHEMATIC).id
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            # A fresh parse each time: nothing is cached between iterations.
            if parse_schematic(SCHEMATIC).id != expected:
                raise SystemExit("ID changed between runs")
        count += 200
    elapsed = time.perf_counter() - start
    print(f"schematic_id: {count / elapsed:,.0f} schematics/s (parse + canonical + sha256, 1 core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
