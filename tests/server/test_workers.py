"""`serve --workers N`: real worker processes on one listening socket, as a client sees them.

Both workers answer (their request IDs' per-process prefixes), /metrics adds up every process's
counters (the supervisor's TFTP ones too), a killed worker is started again while service goes
on, one build per asset across workers, SIGTERM stops them all, and they die with the supervisor.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml
from build_helpers import private_config
from serving import Served, post_schematic, start_server

SETTLE = 3.0  # each process publishes its metrics at least every half second


def http_workers(served: Served) -> list[int]:
    return served.children(b"server.http_worker")


def run_dir(served: Served) -> Path:
    argv = Path(f"/proc/{http_workers(served)[0]}/cmdline").read_bytes().split(b"\0")
    return Path(argv[argv.index(b"--run-dir") + 1].decode())


def health(served: Served) -> tuple[int, str]:
    """GET /healthz: its status, and which process answered (a request ID is a per-process prefix
    and a counter). The response is not kept: its connection closes (the test cap is 64)."""
    with requests.get(served.url + "/healthz", timeout=60) as answer:
        return answer.status_code, answer.headers["X-Request-Id"][:16]


def ask_many(served: Served, count: int) -> set[tuple[int, str]]:
    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(lambda _: health(served), range(count)))


def settled_metric(
    served: Served, name: str, expected: float | None = None, **labels: str
) -> float:
    """The metric once two reads a publishing interval apart agree (and equal `expected`, if
    given), or as it is when SETTLE has passed."""
    deadline = time.monotonic() + SETTLE
    value = served.metric(name, **labels)
    while True:
        time.sleep(0.6)
        again = served.metric(name, **labels)
        settled = again == value and (expected is None or again == expected)
        if settled or time.monotonic() > deadline:
            return again
        value = again


@pytest.fixture(scope="module")
def pair(server_factory: Callable[..., Served]) -> Served:
    return server_factory(workers=2, pxe={"default": {"schematic": "1" * 64, "version": "v1.11.5"}})


def test_both_workers_answer_and_metrics_add_up(pair: Served) -> None:
    assert len(http_workers(pair)) == 2
    route = {"route": "healthz", "method": "GET", "status": "200"}
    before = settled_metric(pair, "imagefactory_http_requests_total", **route)
    answers = ask_many(pair, 200)
    assert {status for status, _ in answers} == {200}
    assert len({process for _, process in answers}) == 2
    after = settled_metric(pair, "imagefactory_http_requests_total", before + 200, **route)
    assert after == before + 200


def test_tftp_stays_in_the_supervisor_and_is_counted(pair: Served, tmp_path: Path) -> None:
    out = tmp_path / "boot.ipxe"
    for _ in range(3):
        fetched = subprocess.run(
            ["curl", "-sS", "-o", str(out), f"tftp://127.0.0.1:{pair.tftp_port}/boot.ipxe"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert fetched.returncode == 0, fetched.stderr
    assert out.read_bytes().startswith(b"#!ipxe")
    udp_owners = {
        pid for pid in [pair.proc.pid, *http_workers(pair)] if _has_udp(pid, pair.tftp_port)
    }
    assert udp_owners == {pair.proc.pid}
    assert settled_metric(pair, "imagefactory_tftp_transfers_total", 3, result="ok") == 3


def _has_udp(pid: int, port: int) -> bool:
    """Whether `pid` holds a socket bound to UDP `port`."""
    inodes = {
        os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
        for fd in os.listdir(f"/proc/{pid}/fd")
        if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
    }
    rows = Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]
    return any(
        int(row.split()[1].split(":")[1], 16) == port and row.split()[9] in inodes for row in rows
    )


def test_a_killed_worker_is_started_again(pair: Served) -> None:
    first = http_workers(pair)
    before = {process for _, process in ask_many(pair, 200)}
    assert len(before) == 2
    route = {"route": "healthz", "method": "GET", "status": "200"}
    counted = settled_metric(pair, "imagefactory_http_requests_total", **route)
    os.kill(first[0], signal.SIGKILL)
    # Service goes on meanwhile: the other worker takes every connection.
    assert {health(pair)[0] for _ in range(50)} == {200}
    deadline = time.monotonic() + 30
    while not {process for _, process in ask_many(pair, 20)} - before:
        assert time.monotonic() < deadline, "no new worker answered"
    now = http_workers(pair)
    assert len(now) == 2 and first[0] not in now and first[1] in now
    assert settled_metric(pair, "imagefactory_worker_restarts_total", 1) == 1
    # The dead worker's counts stay in the totals.
    total = settled_metric(pair, "imagefactory_http_requests_total", **route)
    assert total >= counted + 50 + 20


def test_one_build_across_workers(pair: Served) -> None:
    schematic_id = post_schematic(pair, "customization:\n  extraKernelArgs:\n    - test.pair=1\n")
    url = f"{pair.url}/image/{schematic_id}/v1.11.5/metal-amd64.iso"
    before = settled_metric(pair, "imagefactory_builds_started_total")
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: requests.get(url, timeout=300), range(20)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert len({a.headers["X-Request-Id"][:16] for a in answers}) == 2  # both workers asked
    for answer in answers:
        answer.close()
    assert settled_metric(pair, "imagefactory_builds_started_total", before + 1) == before + 1
    assert settled_metric(pair, "imagefactory_builds_succeeded_total", before + 1) == before + 1


def test_a_failed_build_is_every_workers_answer(pair: Served) -> None:
    """Workers that waited for another's build answer with its failure, not a build of their own."""
    gvisor = (
        "customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/gvisor\n"
    )
    url = f"{pair.url}/image/{post_schematic(pair, gvisor)}/v1.7.7/initramfs-amd64.xz"
    before = settled_metric(pair, "imagefactory_builds_started_total")
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: requests.get(url, timeout=300), range(20)))
    assert {a.status_code for a in answers} == {400}
    assert len({a.text for a in answers}) == 1 and "gvisor" in answers[0].text
    assert len({a.headers["X-Request-Id"][:16] for a in answers}) == 2
    for answer in answers:
        answer.close()
    assert settled_metric(pair, "imagefactory_builds_started_total", before + 1) == before + 1


def test_sigterm_stops_every_worker_and_their_builds(server_factory: Callable[..., Served]) -> None:
    served = server_factory(args=("--workers", "3"))
    workers = http_workers(served)
    assert len(workers) == 3
    shared = run_dir(served)
    assert shared.is_dir()
    schematic_id = post_schematic(served, "customization:\n  extraKernelArgs:\n    - test.stop=1\n")
    url = f"{served.url}/image/{schematic_id}/v1.11.5/metal-amd64.iso"
    threading.Thread(target=_ignore_errors, args=(url,), daemon=True).start()
    deadline = time.monotonic() + 30
    while not (builds := served.worker_pids()):
        assert time.monotonic() < deadline, "no build started"
        time.sleep(0.01)
    time.sleep(0.5)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0
    assert not [pid for pid in workers + builds if Path(f"/proc/{pid}").exists()]
    assert not shared.exists()
    assert not list(served.store.rglob(".work-*"))
    assert not list(served.store.rglob("*.iso"))
    log = served.log.read_text()
    assert "Traceback" not in log and "starting it again" not in log


def _ignore_errors(url: str) -> None:
    with contextlib.suppress(requests.RequestException):
        requests.get(url, timeout=60)


def test_workers_die_with_the_supervisor(sample_release: Path, tmp_path: Path) -> None:
    served = start_server(sample_release, tmp_path, workers=2)
    workers = http_workers(served)
    shared = run_dir(served)
    served.proc.kill()
    served.proc.wait()
    deadline = time.monotonic() + 15
    while alive := [pid for pid in workers if Path(f"/proc/{pid}").exists()]:
        assert time.monotonic() < deadline, f"workers outlived their supervisor: {alive}"
        time.sleep(0.1)
    shutil.rmtree(shared, ignore_errors=True)  # what a killed supervisor cannot remove


@pytest.mark.parametrize("value", ["0", "-1", "65", "100000", "two", "1.5", ""])
def test_bad_worker_counts_exit_2_with_one_line(sample_release: Path, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imagefactory", "serve", "--config", str(sample_release),
         "--workers", value],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--workers" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", [0, 65, "2"])
def test_bad_workers_in_the_config_exit_2(
    sample_release: Path, tmp_path: Path, value: object
) -> None:
    config = private_config(sample_release, tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw.setdefault("server", {})["workers"] = value
    config.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "imagefactory", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "workers" in result.stderr, result.stderr


def test_one_worker_is_one_process(sample_release: Path, tmp_path: Path) -> None:
    served = start_server(sample_release, tmp_path, args=("--workers", "1"))
    try:
        assert served.get("/healthz").status_code == 200
        assert http_workers(served) == []
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=30) == 0
