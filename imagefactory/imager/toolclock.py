"""Runs external tools through imagefactory.tools.run and adds up their wall time.

The imager benchmarks compare this sum with the whole build to measure our own overhead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from imagefactory import tools


@dataclass
class ToolClock:
    """Accumulates the wall time and count of tool runs (mutable on purpose: a running total)."""

    seconds: float = 0.0
    calls: int = 0

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
    ) -> bytes:
        start = time.perf_counter()
        try:
            return tools.run(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1
