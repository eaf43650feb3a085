"""Benchmark: an on-demand ISO through the server against the same build run alone by the CLI.

Prints the CLI's wall time, the server's time to first byte for the same ISO (two stores warmed the
same way), their ratio (target under 1.1), and 50 concurrent requests for another ISO: how many
builds ran (must be 1) and whether every client got the same bytes.
Run: .venv/bin/python bench/ondemand.py [--sample DIR]   (DIR: an existing sample release)
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

from imagefactory.config import load_config
from imagefactory.schematic import parse_schematic
from imagefactory.sources import lock_source

VERSION = "v1.11.5"
ASSET = "metal-amd64.iso"


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "imagefactory", *args], check=True, capture_output=True)


def make_sample(where: Path) -> Path:
    """A locked sample release of VERSION (the stand-in for upstream's images)."""
    started = time.monotonic()
    cli("sample-release", "--out", str(where), "--versions", VERSION)
    cli("lock", "--config", str(where / "config.yaml"))
    print(f"sample release: {time.monotonic() - started:.1f} s")
    return where


def absolute_sources(sample: Path) -> dict[str, object]:
    """The sample config's keys that hold paths relative to it, made absolute for a copy."""
    config = yaml.safe_load((sample / "config.yaml").read_text())
    src = config["sources"]
    layout = src["registry"].removeprefix("oci-layout:")
    if layout != src["registry"]:
        src["registry"] = f"oci-layout:{sample / layout}"
    if "publicKey" in src["verify"]:
        src["verify"]["publicKey"] = str(sample / src["verify"]["publicKey"])
    changes: dict[str, object] = {"sources": src}
    for section in ("secureBoot", "publish"):
        if section in config:
            changes[section] = {
                name: str(sample / value) if name.endswith("Path") else value
                for name, value in config[section].items()
            }
    return changes


def private_config(sample: Path, where: Path, **changes: object) -> Path:
    """The sample's config with its own store (and other top-level keys changed), locked."""
    where.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((sample / "config.yaml").read_text())
    config["store"] = str(where / "store")
    config.update(absolute_sources(sample))
    config.update(changes)
    path = where / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    lock = json.loads((sample / "sources.lock.json").read_text())
    lock["source"] = lock_source(load_config(path))
    (where / "sources.lock.json").write_text(json.dumps(lock))
    return path


def schematic(where: Path, tag: str) -> Path:
    path = where / f"{tag}.yaml"
    path.write_text(f"customization:\n  extraKernelArgs:\n    - bench.{tag}=1\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def metric(url: str, name: str) -> float:
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", type=Path, help="an existing sample release directory")
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ondemand-"))
    server = None
    try:
        sample = args.sample or make_sample(work / "sample")
        alone, served = (
            private_config(sample, work / "alone"),
            private_config(sample, work / "served"),
        )
        first = schematic(work, "first")
        for config in (alone, served):  # the same warm store: sources unpacked, kernel built
            cli("build", "--config", str(config), "--schematic", str(first),
                "--version", VERSION, "--asset", "kernel-amd64", "--out", str(work / "warm"))  # fmt: skip

        started = time.monotonic()
        cli("build", "--config", str(alone), "--schematic", str(first),
            "--version", VERSION, "--asset", ASSET, "--out", str(work / "out"))  # fmt: skip
        cli_seconds = time.monotonic() - started

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "imagefactory", "serve", "--config", str(served),
             "--http", f"tcp:{port}:interface=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/healthz", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start") from None
                time.sleep(0.05)
        first_id = parse_schematic(first.read_bytes()).id
        requests.post(url + "/schematics", data=first.read_bytes(), timeout=10)
        started = time.monotonic()
        with requests.get(
            f"{url}/image/{first_id}/{VERSION}/{ASSET}", stream=True, timeout=600
        ) as r:
            r.raise_for_status()
            next(r.iter_content(1))
            ttfb = time.monotonic() - started
        print(f"ISO built alone (CLI):           {cli_seconds:6.2f} s")
        print(f"ISO on demand, first byte:       {ttfb:6.2f} s   ratio {ttfb / cli_seconds:.2f}")

        second = schematic(work, "second")
        second_id = parse_schematic(second.read_bytes()).id
        requests.post(url + "/schematics", data=second.read_bytes(), timeout=10)
        before = metric(url, "imagefactory_builds_started_total")
        target = f"{url}/image/{second_id}/{VERSION}/{ASSET}"
        started = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            bodies = list(
                pool.map(lambda _: requests.get(target, timeout=600), range(args.clients))
            )
        wall = time.monotonic() - started
        builds = metric(url, "imagefactory_builds_started_total") - before
        statuses = sorted({b.status_code for b in bodies})
        same = len({b.content for b in bodies}) == 1
        print(
            f"{args.clients} concurrent requests: {wall:6.2f} s, builds run: {builds:.0f}, "
            f"statuses {statuses}, identical bytes: {same}"
        )
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
