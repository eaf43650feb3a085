"""Run the CLI as a hostile user would meet it: a subprocess with bounded memory and time.

Every run must end with exit 0, 1 or 2, at most one plain error line, and no traceback.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Address space of the CLI process: a bomb that expands must fail well below this.
MEMORY_BYTES = 1536 << 20
FORBIDDEN = ("Traceback", "internal error", "unexpected failure")


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: bytes
    stderr: str
    seconds: float


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def run_cli(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> Outcome:
    """Run `imagefactory ARGS`; fail the test on a hang, a crash or an unclean error line."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "imagefactory", *map(os.fspath, args)],
        cwd=cwd or REPO,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        preexec_fn=_bounded,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        check=False,
    )
    outcome = Outcome(
        proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"),
        time.monotonic() - started,
    )  # fmt: skip
    check_clean(outcome)
    return outcome


def check_clean(outcome: Outcome) -> None:
    assert outcome.code in (0, 1, 2), outcome
    for word in FORBIDDEN:
        assert word not in outcome.stderr, outcome.stderr[:2000]
    errors = [line for line in outcome.stderr.splitlines() if "warning:" not in line]
    assert len(errors) <= 1, outcome.stderr[:2000]
    assert all(len(line) <= 1200 for line in errors), outcome.stderr[:2000]
    if outcome.code != 0:
        assert errors and errors[0].startswith("imagefactory"), outcome.stderr[:2000]
