"""On-demand builds: one build per asset however many ask, failures with their reason, a killed or
timed-out build answered 503 and built again next time, a full disk, clients that go away."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from serving import Served, post_schematic, stop_server

GVISOR = "customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/gvisor\n"


def unique_schematic(served: Served, tag: str) -> str:
    """A schematic no other test built (its own kernel argument)."""
    return post_schematic(served, f"customization:\n  extraKernelArgs:\n    - test.{tag}=1\n")


def wait_for_worker(served: Served, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = served.worker_pids()
        if pids:
            return pids[0]
        time.sleep(0.01)
    raise AssertionError("no build process appeared")


def test_many_clients_one_build(served: Served) -> None:
    schematic_id = unique_schematic(served, "many")
    url = f"{served.url}/image/{schematic_id}/v1.11.5/metal-amd64.iso"
    before = served.metric("imagefactory_builds_started_total")
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: requests.get(url, timeout=300), range(20)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert served.metric("imagefactory_builds_started_total") == before + 1


def test_unavailable_extension_is_400_and_leaves_nothing(served: Served) -> None:
    schematic_id = post_schematic(served, GVISOR)
    answer = served.get(f"/image/{schematic_id}/v1.7.7/initramfs-amd64.xz")
    assert answer.status_code == 400, answer.text
    assert "gvisor" in answer.text and "1.7.7" in answer.text
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    built = served.store / "ondemand" / "image" / schematic_id / "v1.7.7"
    assert not built.exists() or not any(p.name.startswith("initramfs") for p in built.iterdir())
    # kernel and cmdline carry no extensions: upstream builds them for the same schematic.
    assert served.get(f"/image/{schematic_id}/v1.7.7/kernel-amd64").status_code == 200


def test_killed_build_is_503_then_built_again(served: Served) -> None:
    schematic_id = unique_schematic(served, "killed")
    url = f"{served.url}/image/{schematic_id}/v1.11.5/metal-amd64.iso"
    result: list[requests.Response] = []
    client = threading.Thread(target=lambda: result.append(requests.get(url, timeout=300)))
    client.start()
    os.kill(wait_for_worker(served), signal.SIGKILL)
    client.join()
    answer = result[0]
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert "stopped (signal 9)" in answer.text
    again = requests.get(url, timeout=300)
    assert again.status_code == 200
    assert again.content[32769:32774] == b"CD001"  # an ISO 9660 volume descriptor


def test_a_client_gone_does_not_cancel_the_build(served: Served) -> None:
    schematic_id = unique_schematic(served, "gone")
    url = f"{served.url}/image/{schematic_id}/v1.11.5/metal-amd64.iso"
    before = served.metric("imagefactory_builds_started_total")
    with pytest.raises(requests.Timeout):
        requests.get(url, timeout=0.5)
    answer = requests.get(url, timeout=300)
    assert answer.status_code == 200
    assert served.metric("imagefactory_builds_started_total") == before + 1


def test_client_gone_mid_download(served: Served) -> None:
    url = f"{served.url}/image/{unique_schematic(served, 'many')}/v1.11.5/metal-amd64.iso"
    whole = requests.get(url, timeout=300).content
    for _ in range(5):
        with requests.get(url, stream=True, timeout=30) as partial:
            assert len(next(partial.iter_content(65536))) > 0
        # closed after one chunk; the next client still gets every byte
    assert requests.get(url, timeout=60).content == whole
    assert served.get("/healthz").status_code == 200


def test_build_timeout(server_factory: Callable[..., Served]) -> None:
    hurried = server_factory(builds={"timeoutSeconds": 0.3})
    schematic_id = unique_schematic(hurried, "slow")
    answer = hurried.get(f"/image/{schematic_id}/v1.11.5/metal-amd64.iso")
    assert answer.status_code == 503
    assert "did not finish within 0.3 s" in answer.text
    assert hurried.metric("imagefactory_builds_failed_total", reason="Unavailable") == 1


def test_sigterm_stops_builds_and_removes_temporary_files(
    server_factory: Callable[..., Served],
) -> None:
    stopping = server_factory()
    schematic_id = unique_schematic(stopping, "stop")
    url = f"{stopping.url}/image/{schematic_id}/v1.11.5/metal-amd64.iso"
    threading.Thread(target=lambda: _ignore_errors(url), daemon=True).start()
    worker = wait_for_worker(stopping)
    time.sleep(0.5)
    log = stop_server(stopping)
    assert stopping.proc.returncode == 0, log[-2000:]
    assert not Path(f"/proc/{worker}").exists()
    assert not list(stopping.store.rglob(".work-*"))
    assert not (
        stopping.store / "ondemand" / "image" / schematic_id / "v1.11.5"
    ).exists() or not any(
        (stopping.store / "ondemand" / "image" / schematic_id / "v1.11.5").iterdir()
    )


def _ignore_errors(url: str) -> None:
    with contextlib.suppress(requests.RequestException):
        requests.get(url, timeout=60)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small"
    where.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


# Mounting a tmpfs needs CAP_SYS_ADMIN, which an unprivileged CI container lacks.
@pytest.mark.may_skip
def test_store_disk_full(server_factory: Callable[..., Served], small_disk: Path) -> None:
    full = server_factory(config={"store": str(small_disk / "store")})
    schematic_id = unique_schematic(full, "full")
    answer = full.get(f"/image/{schematic_id}/v1.11.5/metal-amd64.iso")
    assert answer.status_code == 500, answer.text
    assert "No space left on device" in answer.text
    assert not list(small_disk.rglob(".work-*"))
    assert not list(small_disk.rglob("*.iso"))
    assert full.get("/versions").status_code == 200


def test_a_stalled_reader_is_disconnected(served: Served) -> None:
    """A client that stops reading mid-download is cut off after stalledSeconds (5 s here)."""
    url = f"/image/{unique_schematic(served, 'many')}/v1.11.5/metal-amd64.iso"
    assert served.get(url).status_code == 200  # built
    host, port = served.url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(1)
        assert served.metric("imagefactory_http_connections") == 2  # this one and /metrics
        time.sleep(7)
        assert served.metric("imagefactory_http_connections") == 1
