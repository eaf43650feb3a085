"""Runs external tools through imagefactory.tools.run and adds up their wall time.

The imager benchmark compares this sum with the whole build to measure our own overhead.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from imagefactory import tools


@dataclass
class ToolClock:
    """Accumulates the wall time and count of tool runs (mutable on purpose: a running total)."""

    seconds: float = 0.0
    calls: int = 0
    # Nesting depth: `run` inside `timing_all_tools` reaches the wrapper too; count it once.
    _depth: int = field(default=0, repr=False, compare=False)

    def _timed(self, call: Callable[[], bytes]) -> bytes:
        self._depth += 1
        start = time.perf_counter()
        try:
            return call()
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.seconds += time.perf_counter() - start
                self.calls += 1

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
    ) -> bytes:
        return self._timed(lambda: tools.run(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout))

    @contextlib.contextmanager
    def timing_all_tools(self) -> Iterator[ToolClock]:
        """Time every `tools.run` in the block, also those of builders that take no clock.

        The UKI, ISO, FAT and signing modules call `tools.run` directly; swapping the module
        attribute for the block times them all without threading a clock through each signature.
        """
        original = tools.run

        # Whatever tools.run accepts is passed through unchanged.
        def timed(*args: Any, **kwargs: Any) -> bytes:
            return self._timed(lambda: original(*args, **kwargs))

        tools.run = timed
        try:
            yield self
        finally:
            tools.run = original
