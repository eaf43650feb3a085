"""The one way the factory runs an external tool, and the one way to observe the runs.

argv is always a list, is logged and recorded; a failure raises ToolError with the stderr tail.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, cast

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
    full_env = None if env is None else {**os.environ, **env}
    input_bytes = stdin if isinstance(stdin, bytes) else None
    stdin_file = None if isinstance(stdin, bytes) or stdin is None else stdin
    with _recorded(args), tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.PIPE if input_bytes is not None else stdin_file,
                stdout=stdout if stdout is not None else subprocess.PIPE,
                stderr=errors,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise BuildError(
                f"required tool {args[0]!r} is not installed (see README: setup)"
            ) from exc
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
        try:
            proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=errors)
        except FileNotFoundError as exc:
            raise BuildError(
                f"required tool {args[0]!r} is not installed (see README: setup)"
            ) from exc
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
            if code > 0 or (code < 0 and not failed):
                raise ToolError(args, code, _tail(errors))
