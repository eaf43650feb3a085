"""What the processes of one multi-worker server share, through files in a run directory.

Each process writes its metrics to `metrics-<name>.json` (every half second, when they changed)
and /metrics adds up every file with the live figures of the process asked. On-demand
builds take a `flock` per build key in `flights/`, so one process builds and the others wait, and
one per slot in `slots/`, so the build pool is bounded across processes as within one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from twisted.application import internet, service
from twisted.internet import defer, reactor, tcp
from twisted.internet.interfaces import IListeningPort, IReactorSocket
from twisted.web.server import Site

from imagefactory.files import write_atomic
from server.metrics import Metrics, Snapshot, is_counter
from server.web import clock, sleep

METRICS_INTERVAL = 0.5
LOCK_POLL = 0.1


# ---- metrics files ------------------------------------------------------------------------------


def metrics_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"metrics-{name}.json"


def write_snapshot(path: Path, snapshot: Snapshot) -> None:
    rows = {
        name: [[list(map(list, key)), value] for key, value in s.items()]
        for name, s in snapshot.items()
    }
    write_atomic(path, json.dumps(rows).encode())


def read_snapshot(path: Path) -> Snapshot:
    """A process's last figures; nothing (not an error) if it has written none yet."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    snapshot: Snapshot = {}
    for name, series in rows.items():
        snapshot[name] = {
            tuple((str(k), str(v)) for k, v in key): float(value) for key, value in series
        }
    return snapshot


def forget_gauges(path: Path) -> None:
    """A process ended: its counters stay in the totals, its open connections and builds do not."""
    snapshot = read_snapshot(path)
    if snapshot:
        kept = {n: s for n, s in snapshot.items() if is_counter(n)}
        with contextlib.suppress(OSError):  # the run directory gone: the server is stopping
            write_snapshot(path, kept)


class SharedMetrics(internet.TimerService):
    """Publishes this process's metrics to the run directory and reads the others' for /metrics.

    Counters a previous process of the same name left are carried over, so totals never drop
    when a worker is started again.
    """

    def __init__(self, metrics: Metrics, run_dir: Path, name: str) -> None:
        super().__init__(METRICS_INTERVAL, self.publish)
        self.clock = clock
        self.metrics = metrics
        self.path = metrics_path(run_dir, name)
        self.run_dir = run_dir
        self._written: Snapshot | None = None
        metrics.peers = self.peers

    def startService(self) -> None:
        self.metrics.restore(read_snapshot(self.path))
        super().startService()

    def stopService(self) -> defer.Deferred[None]:
        self.publish()
        return super().stopService()  # type: ignore[no-any-return]

    def publish(self) -> None:
        snapshot = self.metrics.snapshot()
        if snapshot != self._written:
            with contextlib.suppress(OSError):  # the run directory gone: the server is stopping
                write_snapshot(self.path, snapshot)
                self._written = snapshot

    def peers(self) -> Iterator[Snapshot]:
        for path in sorted(self.run_dir.glob("metrics-*.json")):
            if path != self.path:
                yield read_snapshot(path)


# ---- locks across processes ---------------------------------------------------------------------


class FileLock:
    """An exclusive `flock` taken without blocking: the reactor thread polls for it instead.

    The kernel drops it with the process, so a worker that dies never leaves a key locked.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def acquire(self) -> bool:
        """Hold the lock; True if another process held it first (so had the work done)."""
        waited = False
        while not self.try_acquire():
            waited = True
            await sleep(LOCK_POLL)
        return waited

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock


@dataclass(frozen=True)
class SharedBuilds:
    """Where the build pool of every worker meets: one flight per key, `concurrency` slots."""

    root: Path
    concurrency: int

    @classmethod
    def under(cls, run_dir: Path, concurrency: int) -> SharedBuilds:
        for sub in ("flights", "slots"):
            (run_dir / sub).mkdir(exist_ok=True)
        return cls(run_dir, concurrency)

    def _name(self, key: tuple[str, ...]) -> str:
        return hashlib.sha256("\0".join(key).encode()).hexdigest()[:40]

    def flight(self, key: tuple[str, ...]) -> FileLock:
        return FileLock(self.root / "flights" / f"{self._name(key)}.lock")

    def outcome_path(self, key: tuple[str, ...]) -> Path:
        return self.root / "flights" / f"{self._name(key)}.json"

    async def slot(self) -> FileLock:
        """One of the pool's slots, held until released; polled for while all are taken."""
        while True:
            for index in range(self.concurrency):
                lock = FileLock(self.root / "slots" / str(index))
                if lock.try_acquire():
                    return lock
            await sleep(LOCK_POLL)


# ---- the listening socket -----------------------------------------------------------------------


class SharedPort(tcp.Port):
    """A port on the listening socket all workers share: one accept per wake-up, so a burst of
    connections spreads over the workers (an idle one takes the next) instead of going whole to
    the first one awake, as Twisted's adaptive accept loop would have it."""

    @property
    def numberAccepts(self) -> int:
        return 1

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        pass


class AdoptedPort(service.Service):
    """Serves `factory` on a listening socket inherited as descriptor `fd`."""

    def __init__(self, fd: int, factory: Site) -> None:
        self.fd = fd
        self.factory = factory
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        probe = socket.socket(fileno=os.dup(self.fd))
        family = probe.family
        probe.close()
        if family == socket.AF_UNIX:
            sockets: IReactorSocket = reactor  # type: ignore[assignment]
            # Site is a ServerFactory that Twisted's stubs do not declare as one.
            self.port = sockets.adoptStreamPort(self.fd, family, self.factory)  # type: ignore[arg-type]
        else:
            port = SharedPort._fromListeningDescriptor(reactor, self.fd, family, self.factory)
            port.startListening()
            self.port = port
        os.close(self.fd)  # the port holds its own duplicate

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        stopped = self.port.stopListening() if self.port is not None else None
        return stopped if stopped is not None else defer.succeed(None)
