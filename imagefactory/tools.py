"""The one way the factory runs an external tool, and the one way to observe the runs.

argv is always a list, is logged and recorded; a failure raises ToolError with the stderr tail.
Children die with the factory process (see `_spawn`) and keep their temporary files in the build's
scratch directory (`temporary_files`).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from imagefactory.errors import BuildError, ToolError

log = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 4096
# Long enough for mksquashfs -18 of a large extension on a slow machine; a hung tool still ends.
DEFAULT_TIMEOUT = 3600.0


@dataclass
class ToolRuns:
    """The tool runs inside one `recording()` block: summed wall time, count and argv, in order.

    Mutable on purpose: a running total that `run` and `stream` add to.
    """

    seconds: float = 0.0
    calls: int = 0
    argvs: list[list[str]] = field(default_factory=list)


# The recorders open in this context, innermost last; a tuple, so a copied context (a worker thread
# started with copy_context) shares the recorders but never the list of them.
_recorders: contextvars.ContextVar[tuple[ToolRuns, ...]] = contextvars.ContextVar(
    "imagefactory_tool_recorders", default=()
)
# A context copied into worker threads shares its recorders; their totals must not lose updates.
_record_lock = threading.Lock()


@contextlib.contextmanager
def recording() -> Iterator[ToolRuns]:
    """Record every `run` and `stream` started in this context inside the block.

    Other threads and tasks (own contexts) are not seen; nested blocks each record a run once.
    Failed runs count too; overlapping streams each add their full wall time.
    """
    runs = ToolRuns()
    token = _recorders.set((*_recorders.get(), runs))
    try:
        yield runs
    finally:
        _recorders.reset(token)


@contextlib.contextmanager
def _recorded(args: list[str]) -> Iterator[None]:
    # The recorders open when the tool starts: a block opened while a stream is read does not
    # count that stream.
    recorders = _recorders.get()
    start = time.perf_counter()
    try:
        yield
    finally:
        if recorders:
            elapsed = time.perf_counter() - start
            with _record_lock:
                for runs in recorders:
                    runs.seconds += elapsed
                    runs.calls += 1
                    runs.argvs.append(list(args))


# Where children put temporary files (TMPDIR): the build's scratch directory, removed with it.
_tmpdir: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "imagefactory_tool_tmpdir", default=None
)


@contextlib.contextmanager
def temporary_files(directory: Path) -> Iterator[Path]:
    """Tools started inside the block get TMPDIR=`directory` (created here).

    The outermost block also points this process's own temporary files (tempfile) there, so a
    killed build leaves nothing in the system's $TMPDIR; a build runs one per process.
    """
    directory.mkdir(parents=True, exist_ok=True)
    outermost = _tmpdir.get() is None
    previous = tempfile.tempdir
    token = _tmpdir.set(directory)
    if outermost:
        tempfile.tempdir = str(directory)
    try:
        yield directory
    finally:
        _tmpdir.reset(token)
        if outermost:
            tempfile.tempdir = previous


def _child_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    tmpdir = _tmpdir.get()
    if tmpdir is None:
        return None if env is None else {**os.environ, **env}
    return {**os.environ, "TMPDIR": str(tmpdir), **(env or {})}


_PR_SET_PDEATHSIG = 1

# The watchdog: a small process that holds the read end of a pipe whose write end only the factory
# process has. When the factory dies (even by SIGKILL) the pipe reads EOF and the watchdog kills
# every tool process group still registered, so grandchildren (grub-mkrescue's xorriso) die too;
# PR_SET_PDEATHSIG alone reaches only the direct child.
_WATCHDOG = """
import os, signal
groups, pending = set(), b""
while data := os.read(0, 4096):
    *lines, pending = (pending + data).split(b"\\n")
    for line in lines:
        (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class _Watchdog:
    def __init__(self) -> None:
        read_end, self.write_end = os.pipe()
        self.pid = os.getpid()
        self.lock = threading.Lock()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHDOG],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C for the factory must not kill the watchdog
            )
        finally:
            os.close(read_end)

    def tell(self, op: str, group: int) -> None:
        # A gone watchdog is no reason to fail a build: PR_SET_PDEATHSIG still covers the child.
        with self.lock, contextlib.suppress(OSError):
            os.write(self.write_end, f"{op}{group}\n".encode())


class _ChildPolicy:
    """Children die with this process: parent-death signal, own process group, the watchdog."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watchdog: _Watchdog | None = None
        self.parent_pid = 0
        self.libc: Any = None
        with contextlib.suppress(OSError):
            self.libc = ctypes.CDLL(None, use_errno=True)

    def guard(self) -> _Watchdog:
        """This process's watchdog (a forked worker starts its own)."""
        with self.lock:
            if self.watchdog is None or self.watchdog.pid != os.getpid():
                self.watchdog = _Watchdog()
            self.parent_pid = os.getpid()
            return self.watchdog

    def in_child(self) -> None:
        """preexec_fn: SIGKILL this child when the thread that started it dies, however it dies."""
        if not die_with_parent(signal.SIGKILL, self.parent_pid):
            os._exit(1)


_policy = _ChildPolicy()


def die_with_parent(sig: int, parent: int) -> bool:
    """Have the kernel send this process `sig` when its parent dies, however it dies; False when
    `parent` is gone already (it may die between fork and this call: then nobody sends it)."""
    if _policy.libc is not None:
        _policy.libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return os.getppid() == parent


def _spawn(args: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start a tool in its own process group, bound to this process's life, TMPDIR set."""
    guard = _policy.guard()
    try:
        proc = subprocess.Popen(
            args,
            start_new_session=True,
            preexec_fn=_policy.in_child,  # noqa: PLW1509 - only prctl and getppid run there
            **options,
        )
    except FileNotFoundError as exc:
        raise BuildError(f"required tool {args[0]!r} is not installed (see README: setup)") from exc
    guard.tell("+", proc.pid)
    return proc


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """The tool has exited: kill what is left of its group, then forget the group."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    _policy.guard().tell("-", proc.pid)


def require(tool: str) -> str:
    """Return the absolute path of `tool`, or fail with a message that names it."""
    found = shutil.which(tool)
    if found is None:
        raise BuildError(f"required tool {tool!r} is not installed (see README: setup)")
    return found


def _tail(stream: IO[bytes]) -> str:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - STDERR_TAIL_BYTES))
    return stream.read().decode("utf-8", "replace")


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes:
    """Run argv; return its stdout (unless redirected to `stdout`); raise ToolError on failure.

    stderr goes to a temporary file (noisy tools such as grub-mkrescue --verbose stay out of memory);
    on a timeout the tool's whole process group is killed.
    """
    args = [os.fspath(a) for a in argv]
    log.info("run: %s", shlex.join(args))
    input_bytes = stdin if isinstance(stdin, bytes) else None
    stdin_file = None if isinstance(stdin, bytes) or stdin is None else stdin
    with _recorded(args), tempfile.TemporaryFile() as errors:
        proc = _spawn(
            args,
            cwd=cwd,
            env=_child_env(env),
            stdin=subprocess.PIPE if input_bytes is not None else stdin_file,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=errors,
        )
        try:
            out, _ = proc.communicate(input_bytes, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ToolError(args, -signal.SIGKILL, f"killed after {timeout:.0f} s") from None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            _reap(proc)
        if proc.returncode != 0:
            raise ToolError(args, proc.returncode, _tail(errors))
    return out if stdout is None else b""


@contextlib.contextmanager
def stream(argv: Sequence[str | os.PathLike[str]], *, stdin: IO[bytes]) -> Iterator[BinaryIO]:
    """Run argv as a filter from `stdin` (a real file) and yield its stdout as a stream.

    On leaving, the rest of the output is drained so the tool finishes its own checks; a failure
    raises ToolError, except that after the caller's own error only the tool's exit status counts
    (a pipe closed early ends the tool on SIGPIPE).
    """
    args = [os.fspath(a) for a in argv]
    log.info("run: %s", shlex.join(args))
    with _recorded(args), tempfile.TemporaryFile() as errors:
        proc = _spawn(
            args, env=_child_env(None), stdin=stdin, stdout=subprocess.PIPE, stderr=errors
        )
        assert proc.stdout is not None  # stdout=PIPE
        out = proc.stdout
        failed = False
        try:
            yield cast(BinaryIO, out)
            while out.read(1 << 20):
                pass
        except BaseException:
            failed = True
            raise
        finally:
            out.close()
            code = proc.wait()
            _reap(proc)
            if code > 0 or (code < 0 and not failed):
                raise ToolError(args, code, _tail(errors))
