"""Benchmark: the server against Debian's nginx serving the same published tree, with wrk.

Prints requests/s and p99 for the PXE script (ours: made per request; nginx: the static file) and
for a small static file, MiB/s for a 1 GiB asset, errors, and the server's peak RSS (with workers:
the sum over its processes). nginx runs as many workers as ours unless told otherwise.
Run: .venv/bin/python bench/serve.py [--seconds 10] [--connections 64] [--workers 1]
     [--nginx-workers N] [--sample DIR]   (DIR: an existing sample release; else one is made)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from ondemand import make_sample, private_config

from imagefactory import tree
from imagefactory.schematic import parse_schematic

VERSION = "v1.11.5"
CMDLINE = "talos.platform=metal console=ttyS0 init_on_alloc=1 slab_nomerge pti=on"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def published_tree(root: Path, size: int) -> dict[str, str]:
    """A published generation: schematic, versions, a cmdline, its PXE script, a large asset."""
    schematic = parse_schematic(b"customization: {}\n")
    sid = schematic.id
    public = root / "gen-1"
    files = {
        tree.schematic_path(sid): schematic.canonical_bytes,
        tree.VERSIONS: json.dumps([VERSION]).encode() + b"\n",
        tree.image_path(sid, VERSION, "cmdline-metal-amd64"): CMDLINE.encode(),
    }
    base = "http://127.0.0.1"
    files[tree.pxe_path(sid, VERSION, "metal-amd64")] = tree.pxe_script(
        base, sid, VERSION, "metal", "amd64", secureboot=False, cmdline=CMDLINE
    )
    for relative, data in files.items():
        (public / relative).parent.mkdir(parents=True, exist_ok=True)
        (public / relative).write_bytes(data)
    large = public / tree.image_path(sid, VERSION, "metal-amd64.raw")
    with large.open("wb") as out:
        out.truncate(size)
    (root / "public").symlink_to("gen-1")
    return {
        "pxe": f"/{tree.pxe_path(sid, VERSION, 'metal-amd64')}",
        "small": f"/{tree.VERSIONS}",
        "large": f"/{tree.image_path(sid, VERSION, 'metal-amd64.raw')}",
    }


def nginx_conf(root: Path, port: int, workers: int) -> Path:
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {root}/nginx-tmp;
    proxy_temp_path {root}/nginx-tmp;
    fastcgi_temp_path {root}/nginx-tmp;
    uwsgi_temp_path {root}/nginx-tmp;
    scgi_temp_path {root}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root}/public;
    }}
}}
"""
    )
    return conf


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:  # not listening yet, or its workers not started yet
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _bytes(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)([KMGT]?B)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[unit]


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        # The latency distribution's line, not a "+/- Stdev" figure that ends in 99%.
        "p99_ms": _seconds(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)) * 1000,  # type: ignore[union-attr]
        "mib_s": _bytes(re.search(r"Transfer/sec:\s+(\S+)", out).group(1)) / (1 << 20),  # type: ignore[union-attr]
        "errors": 0.0,
    }
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: (.*)"):
        match = re.search(pattern, out)
        if match:
            result["errors"] += sum(int(n) for n in re.findall(r"\d+", match.group(1)))
    return result


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """The processes `pid` started (its HTTP workers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(child) for child in (task / "children").read_text().split())
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=1, help="our HTTP worker processes")
    parser.add_argument("--nginx-workers", type=int, help="default: as many as --workers")
    parser.add_argument("--sample", type=Path, help="an existing sample release directory")
    args = parser.parse_args()
    if args.nginx_workers is None:
        args.nginx_workers = args.workers
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/apt-packages.txt)")
    root = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    root.chmod(0o755)  # nginx workers run as an unprivileged user
    (root / "nginx-tmp").mkdir()
    paths = published_tree(root, args.large_mib << 20)
    sample = args.sample or make_sample(root / "sample")
    config = private_config(
        sample,
        root,
        public=str(root / "public"),
        server={"limits": {"connections": 4096}},
    )
    ours_port, nginx_port = free_port(), free_port()
    ours = subprocess.Popen(
        [
            sys.executable, "-m", "imagefactory", "serve",
            "--config", str(config),
            "--http", f"tcp:{ours_port}:interface=127.0.0.1:backlog=1024",
            "--external-url", "http://127.0.0.1",
            "--workers", str(args.workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    nginx = subprocess.Popen(
        ["nginx", "-c", str(nginx_conf(root, nginx_port, args.nginx_workers))],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{ours_port}/healthz")
        wait_ready(f"http://127.0.0.1:{nginx_port}/")
        pxe_ours = requests.get(f"http://127.0.0.1:{ours_port}{paths['pxe']}", timeout=10)
        pxe_nginx = requests.get(f"http://127.0.0.1:{nginx_port}{paths['pxe']}", timeout=10)
        assert pxe_ours.content == pxe_nginx.content, (pxe_ours.text, pxe_nginx.text)
        print(
            f"wrk -c{args.connections} -d{args.seconds}s on loopback; "
            f"ours {args.workers} worker(s), nginx {args.nginx_workers} worker(s), sendfile on"
        )
        print(f"{'':8} {'ours':>34} | {'nginx':>34} | ratio")
        for name in ("pxe", "small", "large"):
            figures = []
            for port in (ours_port, nginx_port):
                figures.append(
                    wrk(f"http://127.0.0.1:{port}{paths[name]}", args.seconds, args.connections)
                )
            a, b = figures
            if name == "large":
                cells = [f"{f['mib_s']:9.0f} MiB/s err {f['errors']:.0f}" for f in figures]
                ratio = a["mib_s"] / b["mib_s"]
            else:
                cells = [
                    f"{f['rps']:8.0f} req/s p99 {f['p99_ms']:6.1f} ms err {f['errors']:.0f}"
                    for f in figures
                ]
                ratio = a["rps"] / b["rps"]
            print(f"{name:8} {cells[0]:>34} | {cells[1]:>34} | {ratio:5.2f}")
        peaks = [peak_rss_mib(pid) for pid in [ours.pid, *children(ours.pid)]]
        shown = " + ".join(f"{peak:.0f}" for peak in peaks)
        print(f"server peak RSS: {sum(peaks):.0f} MiB" + (f" ({shown})" if len(peaks) > 1 else ""))
    finally:
        for proc in (ours, nginx):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
