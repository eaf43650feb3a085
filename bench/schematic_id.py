"""Benchmark: schematics per second for parse + canonicalize + hash on one core.

Usage: python bench/schematic_id.py [SECONDS]
"""

from __future__ import annotations

import json
import sys
import time

import yaml

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


def rate(body: bytes, seconds: float, fast: bool = True) -> float:
    expected = parse_schematic(body, fast=fast).id
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            # A fresh parse each time: nothing is cached between iterations.
            if parse_schematic(body, fast=fast).id != expected:
                raise SystemExit("ID changed between runs")
        count += 200
    return count / (time.perf_counter() - start)


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    figure = rate(SCHEMATIC, seconds)
    print(f"schematic_id: {figure:,.0f} schematics/s (parse + canonical + sha256, 1 core)")
    as_json = json.dumps(yaml.safe_load(SCHEMATIC)).encode()
    print(f"  same schematic as JSON: {rate(as_json, seconds / 3):,.0f}/s")
    print(
        f"  event-composer parser (the reference path): {rate(SCHEMATIC, seconds / 3, fast=False):,.0f}/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
