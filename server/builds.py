"""On-demand builds: one process per asset however many ask, a bounded pool, a queue and a timeout.

Builds run as `python -m server.worker` processes (the same build code as the CLI), spawned through
`run_process`, the one Deferred-returning wrapper; the reactor thread never builds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from twisted.application import service
from twisted.internet import defer, error, protocol, reactor
from twisted.internet.interfaces import IDelayedCall, IReactorProcess
from twisted.logger import Logger
from twisted.python.failure import Failure

from imagefactory.config import Config
from imagefactory.errors import BuildError, FactoryError, InvalidInput, NotFound
from imagefactory.files import write_atomic
from server.cluster import SharedBuilds
from server.metrics import Metrics
from server.web import Unavailable, clock, sleep

log = Logger()
processes: IReactorProcess = reactor

OUTPUT_LIMIT = 64 * 1024
STOP_GRACE = 5.0
RETRY_AFTER = 5


@dataclass
class ProcessResult:
    exit_code: int | None  # None: ended by a signal
    signal: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    seconds: float


class _Collector(protocol.ProcessProtocol):
    def __init__(self, done: defer.Deferred[ProcessResult], timeout: float) -> None:
        self.done = done
        self.timeout = timeout
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.timed_out = False
        self.started = time.monotonic()
        self.timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.timer = clock.callLater(self.timeout, self._expire)

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        del self.stdout[:-OUTPUT_LIMIT]

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        del self.stderr[:-OUTPUT_LIMIT]

    def _expire(self) -> None:
        self.timed_out = True
        self.stop(signal.SIGKILL)

    def stop(self, signum: int) -> None:
        pid = self.transport.pid if self.transport is not None else None
        if pid:
            for target in (-pid, pid):  # its group (its tools), and itself should it not lead one
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, signum)

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        exc = reason.value
        code = getattr(exc, "exitCode", None)
        sig = getattr(exc, "signal", None)
        if isinstance(exc, error.ProcessDone):
            code, sig = 0, None
        self.done.callback(
            ProcessResult(
                code,
                sig,
                bytes(self.stdout),
                bytes(self.stderr),
                self.timed_out,
                time.monotonic() - self.started,
            )
        )


def run_process(
    argv: Sequence[str], timeout: float, running: set[_Collector] | None = None
) -> defer.Deferred[ProcessResult]:
    """Spawn argv (a list, never a shell); fire with its result when it ends or is killed."""
    done: defer.Deferred[ProcessResult] = defer.Deferred()
    collector = _Collector(done, timeout)
    processes.spawnProcess(collector, argv[0], list(argv), env=dict(os.environ))
    log.info("spawned {argv}", argv=" ".join(argv))
    if running is not None:
        running.add(collector)

        def forget(result: ProcessResult) -> ProcessResult:
            running.discard(collector)
            return result

        done.addCallback(forget)
    return done


@dataclass(frozen=True)
class Job:
    """One worker run: `python -m server.worker <argv>`, once per key however many wait.

    `output`, when given, is the file whose presence means the work is done (an asset).
    """

    key: tuple[str, ...]
    label: str
    argv: tuple[str, ...]
    output: Path | None = None


Report = dict[str, object]


@dataclass
class _Flight:
    waiters: list[defer.Deferred[Report]] = field(default_factory=list)


class Builds(service.Service):
    """The build pool: a child service of the server, stopping every build when it stops."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        external_url: str,
        shared: SharedBuilds | None = None,
    ) -> None:
        """`shared`: the pool spans several worker processes (which then leave the sweeping of
        temporary directories to their supervisor: one may be building while another starts)."""
        self.config = config
        self.settings = config.server
        self.metrics = metrics
        self.external_url = external_url
        self.root = config.store / "ondemand"
        self.shared = shared
        self._slots = defer.DeferredSemaphore(self.settings.build_concurrency)
        self._flights: dict[tuple[str, ...], _Flight] = {}
        self._running: set[_Collector] = set()

    def startService(self) -> None:
        super().startService()
        if self.shared is None:
            remove_leftovers(self.root)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        for collector in list(self._running):
            collector.stop(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self._running and time.monotonic() < deadline:
            await sleep(0.1)
        for collector in list(self._running):
            collector.stop(signal.SIGKILL)
        if self.shared is None:
            remove_leftovers(self.root)

    def build(self, job: Job) -> defer.Deferred[Report]:
        """A Deferred for the job's report: the flight already under way for it, or a new one.

        Cancelling the returned Deferred (a client gone) leaves the build to the others.
        """
        flight = self._flights.get(job.key)
        if flight is None:
            waiting = len(self._flights) - len(self._running)
            if waiting >= self.settings.build_queue:
                raise Unavailable("too many builds waiting; try again later", RETRY_AFTER)
            flight = self._flights[job.key] = _Flight()
            defer.Deferred.fromCoroutine(self._fly(job, flight))

        def forget(d: defer.Deferred[Report]) -> None:
            if d in flight.waiters:
                flight.waiters.remove(d)

        waiter: defer.Deferred[Report] = defer.Deferred(forget)
        flight.waiters.append(waiter)
        return waiter

    async def _fly(self, job: Job, flight: _Flight) -> None:
        outcome: Report | Failure
        try:
            outcome = await self._run(job)
        except Exception:
            outcome = Failure()
        finally:
            del self._flights[job.key]
            self._gauges()
        for waiter in list(flight.waiters):
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)
        if isinstance(outcome, Failure):
            outcome.trap(Exception)  # handed to every waiter; nothing left unhandled here

    def _gauges(self) -> None:
        self.metrics.set("imagefactory_builds_in_flight", len(self._running))
        self.metrics.set("imagefactory_builds_queued", len(self._flights) - len(self._running))

    async def _run(self, job: Job) -> Report:
        self._gauges()
        if self.shared is None:
            return await self._build(job)
        return await self._build_once_across_workers(job, self.shared)

    async def _build_once_across_workers(self, job: Job, shared: SharedBuilds) -> Report:
        """The build under the key's lock; a worker that waited for another's build takes the
        outcome that one recorded (when recorded after it asked) instead of building again."""
        lock = shared.flight(job.key)
        asked = time.time_ns()
        waited = await lock.acquire()
        try:
            if waited:
                earlier = self._recorded(job, asked)
                if earlier is not None:
                    return earlier
            try:
                report = await self._build(job)
            except FactoryError as exc:
                retry_after = getattr(exc, "retry_after", RETRY_AFTER)
                error = {"status": exc.http_status, "error": str(exc), "retry_after": retry_after}
                self._record(job, error)
                raise
            self._record(job, report)
            return report
        finally:
            lock.release()

    def _record(self, job: Job, outcome: Report) -> None:
        assert self.shared is not None
        record = {"at": time.time_ns(), "outcome": outcome}
        write_atomic(self.shared.outcome_path(job.key), json.dumps(record).encode())

    def _recorded(self, job: Job, since: int) -> Report | None:
        assert self.shared is not None
        try:
            record = json.loads(self.shared.outcome_path(job.key).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("at", 0) < since:
            return None
        outcome: Report = record["outcome"]
        if outcome.get("status") == 200:
            return outcome
        message, status = str(outcome.get("error")), outcome.get("status")
        if status == 503:
            retry_after = outcome.get("retry_after")
            raise Unavailable(message, retry_after if isinstance(retry_after, int) else RETRY_AFTER)
        raise _failure(status, message)

    async def _slot(self) -> Callable[[], object]:
        """A build slot, and how to give it back: this process's, or the workers' pool's."""
        if self.shared is not None:
            return (await self.shared.slot()).release
        await self._slots.acquire()
        return self._slots.release

    async def _build(self, job: Job) -> Report:
        release = await self._slot()
        try:
            if job.output is not None and job.output.is_file():  # made while this one waited
                return {"status": 200}
            argv = [
                sys.executable, "-m", "server.worker",
                "--config", str(self.config.path),
                "--external-url", self.external_url,
                *job.argv,
            ]  # fmt: skip
            self.metrics.add("imagefactory_builds_started_total")
            done = run_process(argv, self.settings.build_timeout, self._running)
            self._gauges()
            result = await done
        finally:
            release()
        self.metrics.add("imagefactory_build_seconds_total", result.seconds)
        try:
            report = self._outcome(job, result)
        except FactoryError as exc:
            self.metrics.add("imagefactory_builds_failed_total", reason=type(exc).__name__)
            log.warn("build {key} failed: {error}", key="/".join(job.key), error=exc)
            raise
        self.metrics.add("imagefactory_builds_succeeded_total")
        return report

    def _outcome(self, job: Job, result: ProcessResult) -> Report:
        if result.timed_out:
            raise Unavailable(
                f"build of {job.label} did not finish within {self.settings.build_timeout:g} s",
                RETRY_AFTER,
            )
        if result.signal is not None:
            raise Unavailable(
                f"build of {job.label} was stopped (signal {result.signal}); try again",
                RETRY_AFTER,
            )
        report = _last_json_line(result.stdout)
        status = report.get("status")
        done = job.output is None or job.output.is_file()
        if result.exit_code == 0 and status == 200 and done:
            return report
        message = str(report.get("error") or _tail(result.stderr) or "build failed")
        raise _failure(status, message, f"build of {job.label} failed: ")


def _failure(status: object, message: str, build_prefix: str = "") -> FactoryError:
    """The error a build's reported status stands for: the client's (400, 404) or the build's."""
    if status == 400:
        return InvalidInput(message)
    if status == 404:
        return NotFound(message)
    return BuildError(build_prefix + message)


def remove_leftovers(root: Path) -> None:
    """Temporary directories of builds whose end no server process saw."""
    if root.is_dir():
        for work in root.rglob(".work-*"):
            shutil.rmtree(work, ignore_errors=True)


def _last_json_line(stdout: bytes) -> dict[str, object]:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _tail(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
