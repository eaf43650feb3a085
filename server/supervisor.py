"""`serve` with `workers` over 1: this process binds the listening socket once, runs that many
HTTP worker processes on it (`python -m server.http_worker`), and keeps TFTP to itself.

A worker that dies is started again, after a pause that doubles while it keeps dying young;
SIGTERM or SIGINT here stops every worker (each stops its builds) and then this process, which
removes what builds left behind and the run directory the workers shared.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from imagefactory.config import Config
from imagefactory.errors import FactoryError
from server.app import run, tftp_service
from server.builds import remove_leftovers
from server.cluster import SharedMetrics, forget_gauges, metrics_path
from server.metrics import Metrics
from server.web import clock

log = Logger()

LISTENING_FD = 3  # where a worker finds the listening socket
FIRST_PAUSE = 0.5
LONGEST_PAUSE = 30.0
YOUNG = 10.0  # a worker that dies younger than this waits longer before its next start
STOP_GRACE = 20.0  # then SIGKILL: a worker gives its builds 5 s


def listen_once(description: str) -> Any:
    """The listening port for `description` (any endpoint string), bound here but not accepting:
    the workers accept on it."""
    endpoint = endpoints.serverFromString(reactor, description)
    outcome: list[Any] = []
    endpoint.listen(protocol.ServerFactory()).addBoth(outcome.append)
    if not outcome:
        raise FactoryError(f"cannot listen: {description} does not bind at once")
    if isinstance(outcome[0], Failure):
        if outcome[0].check(CannotListenError):
            raise FactoryError(f"cannot listen: {outcome[0].value}")
        outcome[0].raiseException()
    port = outcome[0]
    port.stopReading()
    return port


class _Worker(protocol.ProcessProtocol):
    def __init__(self, supervisor: Supervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = time.monotonic()

    def processEnded(self, reason: Failure) -> None:
        self.supervisor.ended(self, reason)


class Supervisor(service.Service):
    """Keeps `count` workers running on the listening socket `fd`."""

    def __init__(
        self, config: Config, count: int, fd: int, run_dir: Path, metrics: Metrics
    ) -> None:
        self.config = config
        self.count = count
        self.fd = fd
        self.run_dir = run_dir
        self.metrics = metrics
        self.workers: dict[int, _Worker] = {}
        self._young_deaths = [0] * count
        self._restarts: dict[int, IDelayedCall] = {}
        self._stopped: defer.Deferred[None] | None = None

    def argv(self, index: int) -> list[str]:
        return [
            sys.executable, "-m", "server.http_worker",
            "--config", str(self.config.path),
            "--external-url", self.config.external_url,
            "--run-dir", str(self.run_dir),
            "--index", str(index),
            "--parent", str(os.getpid()),
            "--fd", str(LISTENING_FD),
        ]  # fmt: skip

    def startService(self) -> None:
        super().startService()
        for index in range(self.count):
            self.start(index)

    def start(self, index: int) -> None:
        self._restarts.pop(index, None)
        worker = _Worker(self, index)
        argv = self.argv(index)
        fds: dict[int, int | str] = {0: "w", 1: 1, 2: 2, LISTENING_FD: self.fd}
        process: IProcessTransport = reactor.spawnProcess(
            worker, argv[0], argv, env=dict(os.environ), childFDs=fds
        )
        self.workers[index] = worker
        log.info("worker {index} started (pid {pid})", index=index, pid=process.pid)

    def ended(self, worker: _Worker, reason: Failure) -> None:
        index = worker.index
        if self.workers.get(index) is worker:
            del self.workers[index]
        forget_gauges(metrics_path(self.run_dir, f"worker{index}"))
        if not self.running:
            if not self.workers and self._stopped is not None:
                self._stopped.callback(None)
            return
        code, sig = getattr(reason.value, "exitCode", None), getattr(reason.value, "signal", None)
        if time.monotonic() - worker.started < YOUNG:
            self._young_deaths[index] += 1
        else:
            self._young_deaths[index] = 0
        pause = min(LONGEST_PAUSE, FIRST_PAUSE * 2 ** max(0, self._young_deaths[index] - 1))
        log.warn(
            "worker {index} ended (exit {code}, signal {sig}); starting it again in {pause:g} s",
            index=index, code=code, sig=sig, pause=pause,
        )  # fmt: skip
        self.metrics.add("imagefactory_worker_restarts_total")
        self._restarts[index] = clock.callLater(pause, self.start, index)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        for call in self._restarts.values():
            call.cancel()
        self._restarts.clear()
        self._stopped = defer.Deferred()
        if not self.workers:
            self._stopped.callback(None)
        for worker in list(self.workers.values()):
            worker.transport.signalProcess("TERM")  # type: ignore[union-attr]
        kill = clock.callLater(STOP_GRACE, self._kill)
        self._stopped.addBoth(lambda result: kill.cancel() if kill.active() else None)
        self._stopped.addCallback(lambda _: remove_leftovers(self.config.store / "ondemand"))
        return self._stopped

    def _kill(self) -> None:
        for worker in list(self.workers.values()):
            log.warn("worker {index} did not stop in time: killed", index=worker.index)
            worker.transport.signalProcess("KILL")  # type: ignore[union-attr]


def supervise(config: Config, *, external_url: str | None = None) -> None:
    """Serve with `config.server.workers` HTTP processes until SIGTERM or SIGINT."""
    if external_url:
        config = dataclasses.replace(config, external_url=external_url)
    port = listen_once(config.server.http)
    run_dir = Path(tempfile.mkdtemp(prefix="imagefactory-serve-"))
    try:
        remove_leftovers(config.store / "ondemand")
        metrics = Metrics()
        top = service.MultiService()
        SharedMetrics(metrics, run_dir, "supervisor").setServiceParent(top)
        tftp = tftp_service(config, metrics)
        if tftp is not None:  # bound first: a port in use fails `serve` before any worker starts
            tftp.setServiceParent(top)
        fd = port.fileno()
        Supervisor(config, config.server.workers, fd, run_dir, metrics).setServiceParent(top)
        run(top)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
