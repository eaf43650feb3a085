"""The one way the factory runs an external tool.

argv is always a list, is logged before it runs, and a failure raises ToolError with the stderr tail.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from imagefactory.errors import BuildError, ToolError

log = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 4096


def require(tool: str) -> str:
    """Return the absolute path of `tool`, or fail with a message that names it."""
    found = shutil.which(tool)
    if found is None:
        raise BuildError(f"required tool {tool!r} is not installed (see README: setup)")
    return found


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> bytes:
    """Run argv; return its stdout (unless redirected to `stdout`); raise ToolError on failure."""
    args = [os.fspath(a) for a in argv]
    log.info("run: %s", shlex.join(args))
    full_env = None if env is None else {**os.environ, **env}
    input_bytes = stdin if isinstance(stdin, bytes) else None
    stdin_file = None if isinstance(stdin, bytes) or stdin is None else stdin
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=full_env,
            input=input_bytes,
            stdin=stdin_file if input_bytes is None else None,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BuildError(f"required tool {args[0]!r} is not installed (see README: setup)") from exc
    if proc.returncode != 0:
        tail = proc.stderr[-STDERR_TAIL_BYTES:].decode("utf-8", "replace")
        raise ToolError(args, proc.returncode, tail)
    return proc.stdout if stdout is None else b""
