"""ToolClock: tool runs timed and counted, directly or for every tools.run inside a block."""

from __future__ import annotations

import pytest

from imagefactory import tools
from imagefactory.errors import ToolError
from imagefactory.imager.toolclock import ToolClock


def test_run_counts_and_times() -> None:
    clock = ToolClock()
    assert clock.run(["sh", "-c", "sleep 0.05; echo hi"]) == b"hi\n"
    assert clock.calls == 1
    assert clock.seconds >= 0.05


def test_failed_run_is_still_counted() -> None:
    clock = ToolClock()
    with pytest.raises(ToolError):
        clock.run(["false"])
    assert clock.calls == 1


def test_timing_all_tools_times_direct_calls_once_and_restores() -> None:
    original = tools.run
    clock = ToolClock()
    with clock.timing_all_tools():
        assert tools.run(["sh", "-c", "sleep 0.05"]) == b""
        clock.run(["true"])  # through the clock and the patched tools.run: counted once
        with pytest.raises(ToolError):
            tools.run(["false"])
    assert clock.calls == 3
    assert clock.seconds >= 0.05
    assert tools.run is original
    tools.run(["true"])
    assert clock.calls == 3


def test_timing_all_tools_restores_after_an_error() -> None:
    original = tools.run
    clock = ToolClock()
    with pytest.raises(RuntimeError), clock.timing_all_tools():
        raise RuntimeError("boom")
    assert tools.run is original
