"""Real registries for integration tests: Debian's docker-registry on a free loopback port.

Every test under tests/integration/ is marked `integration`; HOME points at a temporary directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
READY_TIMEOUT = 15.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class RunningRegistry:
    host: str
    url: str
    root: Path
    pid: int
    user: str | None = None
    password: str | None = None

    def blob_data(self, digest: str) -> Path:
        """The file where distribution stores a blob (or manifest) with this digest."""
        hexd = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(root: Path, port: int, htpasswd: Path | None) -> str:
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {htpasswd}\n"
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root}\n"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: not-a-secret-test-only\n" + auth
    )


def start_registry(
    workdir: Path, *, user: str | None = None, password: str | None = None
) -> tuple[subprocess.Popen[bytes], RunningRegistry]:
    """Spawn `docker-registry serve` and wait (bounded) until GET /v2/ answers."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("Debian docker-registry is not installed (apt-get install docker-registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = None
    if user is not None and password is not None:
        import bcrypt

        htpasswd = workdir / "htpasswd"
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        htpasswd.write_text(f"{user}:{hashed}\n")
    port = free_port()
    cfg = workdir / "registry.yml"
    root = workdir / "data"
    cfg.write_text(_config(root, port, htpasswd))
    log = (workdir / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            if requests.get(f"{url}/v2/", timeout=1).status_code in (200, 401):
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_registry(proc)
            tail = (workdir / "registry.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"docker-registry did not become ready on port {port}: {tail}")
        time.sleep(0.02)
    reg = RunningRegistry(f"127.0.0.1:{port}", url, root, proc.pid, user, password)
    return proc, reg


def stop_registry(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session", autouse=True)
def temp_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """oras-py and skopeo write under $HOME; keep them out of the real one."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    proc, reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        stop_registry(proc)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    proc, reg = start_registry(
        tmp_path_factory.mktemp("auth-registry"), user="factory", password="s3cret-pw"
    )
    try:
        yield reg
    finally:
        stop_registry(proc)
