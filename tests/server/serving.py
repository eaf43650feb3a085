"""Helpers to run a real `imagefactory serve` on free loopback ports, over the sample release.

Tests talk to it with real clients (curl, atftp, skopeo, qemu's iPXE); the server's log is checked
for tracebacks when it stops, and a clean SIGTERM must leave no temporary build directories.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from build_helpers import private_config  # noqa: E402

VANILLA = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
READY_TIMEOUT = 30.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    url: str
    tftp_port: int
    config: Path
    root: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def store(self) -> Path:
        return Path(yaml.safe_load(self.config.read_text())["store"])

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=120, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        text = self.get("/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        series = f"{name}{{{want}}}" if want else name
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0

    def children(self, module: bytes, parent: int | None = None) -> list[int]:
        """Children of the server (or of `parent`) running `python -m <module>`."""
        pids = []
        for task in Path(f"/proc/{parent or self.proc.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):  # ended meanwhile
                    if module in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"):
                        pids.append(int(child))
        return pids

    def worker_pids(self) -> list[int]:
        """Build processes the server runs now (its children running server.worker, or its
        HTTP workers' children)."""
        http = self.children(b"server.http_worker")
        parents = http or [self.proc.pid]
        return [pid for parent in parents for pid in self.children(b"server.worker", parent)]


def start_server(
    sample_release: Path,
    where: Path,
    *,
    external_url: str | None = None,
    http_port: int | None = None,
    config: dict[str, Any] | None = None,
    args: tuple[str, ...] = (),
    tls: tuple[Path, Path] | None = None,
    **server: Any,
) -> Served:
    """A server on 127.0.0.1 (over TLS with `tls`, a key and its certificate for localhost)."""
    port, tftp = http_port or free_port(), free_port(socket.SOCK_DGRAM)
    settings = {
        "limits": {"requestSeconds": 3, "connections": 64, "stalledSeconds": 5},
        "builds": {"concurrency": 2, "timeoutSeconds": 300},
        **server,
    }
    config_path = private_config(sample_release, where, server=settings, **(config or {}))
    url, endpoint = f"http://127.0.0.1:{port}", f"tcp:{port}:interface=127.0.0.1"
    verify: str | bool = True
    if tls is not None:
        url, verify = f"https://localhost:{port}", str(tls[1])
        endpoint = f"ssl:{port}:interface=127.0.0.1:privateKey={tls[0]}:certKey={tls[1]}"
    log = where / "server.log"
    argv = [
        sys.executable, "-m", "imagefactory", "serve",
        "--config", str(config_path),
        "--http", endpoint,
        "--tftp", str(tftp),
        "--external-url", external_url or url,
        *args,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    served = Served(url, tftp, config_path, where, log, proc)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            if requests.get(url + "/healthz", timeout=1, verify=verify).status_code == 200:
                return served
        except requests.RequestException:  # not listening yet, or its workers not started yet
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(served)
            pytest.fail(f"server did not start: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def stop_server(served: Served) -> str:
    """SIGTERM, as an init system stops it; returns its log."""
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGTERM)
        try:
            served.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            served.proc.kill()
            served.proc.wait()
            pytest.fail("server did not stop on SIGTERM")
    return served.log.read_text(errors="replace")


def check_clean_stop(served: Served) -> None:
    log = stop_server(served)
    assert "Traceback" not in log, log[-5000:]
    assert served.proc.returncode == 0, log[-2000:]
    leftovers = list(served.store.rglob(".work-*"))
    assert not leftovers, leftovers


def raw_request(served: Served, request: bytes, *, wait: float = 10.0) -> bytes:
    """Everything the server sends back for `request` (raw bytes) until it closes the connection."""
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def post_schematic(served: Served, text: str) -> str:
    answer = requests.post(served.url + "/schematics", data=text.encode(), timeout=30)
    assert answer.status_code == 201, answer.text
    schematic_id: str = answer.json()["id"]
    return schematic_id


def write_config(path: Path, **changes: Any) -> None:
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=120, check=False)
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
