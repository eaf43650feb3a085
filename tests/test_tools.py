"""The tool runner: argv logged, failures typed with the stderr tail, hung tools killed, runs recorded.

Recorders are per context: nested blocks each count a run once, other threads are not seen.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from pathlib import Path

import pytest

from imagefactory import tools
from imagefactory.errors import BuildError, ToolError


def test_stdout_and_stdin() -> None:
    assert tools.run(["cat"], stdin=b"hello") == b"hello"


def test_failure_carries_argv_code_and_stderr_tail() -> None:
    with pytest.raises(ToolError) as info:
        tools.run(["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; echo last >&2; exit 3"])
    assert info.value.returncode == 3
    assert info.value.argv[0] == "sh"
    assert info.value.stderr_tail.endswith("last\n")
    assert len(info.value.stderr_tail) <= tools.STDERR_TAIL_BYTES


def test_missing_tool_is_named() -> None:
    with pytest.raises(BuildError, match="'no-such-tool-here' is not installed"):
        tools.run(["no-such-tool-here"])


def test_hung_tool_and_its_children_are_killed() -> None:
    start = time.monotonic()
    with pytest.raises(ToolError, match="killed after 1 s"):
        tools.run(["sh", "-c", "sleep 60 & sleep 60"], timeout=1)
    assert time.monotonic() - start < 30


def test_argv_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="imagefactory.tools"):
        tools.run(["echo", "a b"])
    assert "run: echo 'a b'" in caplog.text


# --- recording ------------------------------------------------------------------------------------


def test_recording_counts_times_and_keeps_argv() -> None:
    with tools.recording() as ran:
        assert tools.run(["sh", "-c", "sleep 0.2; echo hi"]) == b"hi\n"
        tools.run([Path("true")])
    assert ran.calls == 2
    assert ran.argvs == [["sh", "-c", "sleep 0.2; echo hi"], ["true"]]
    assert 0.2 <= ran.seconds < 30


def test_failed_and_missing_tools_are_recorded() -> None:
    with tools.recording() as ran:
        with pytest.raises(ToolError):
            tools.run(["false"])
        with pytest.raises(BuildError):
            tools.run(["no-such-tool-here", "x"])
    assert ran.calls == 2
    assert ran.argvs == [["false"], ["no-such-tool-here", "x"]]


def test_nothing_is_recorded_outside_the_block() -> None:
    tools.run(["true"])
    with tools.recording() as ran:
        pass
    tools.run(["true"])
    assert (ran.calls, ran.argvs, ran.seconds) == (0, [], 0.0)


def test_nested_recorders_each_count_a_run_once() -> None:
    with tools.recording() as outer:
        tools.run(["echo", "1"])
        with tools.recording() as inner:
            tools.run(["sh", "-c", "sleep 0.1"])
            with tools.recording() as innermost:
                pass
        tools.run(["echo", "3"])
    assert outer.argvs == [["echo", "1"], ["sh", "-c", "sleep 0.1"], ["echo", "3"]]
    assert outer.calls == 3
    assert inner.argvs == [["sh", "-c", "sleep 0.1"]] and inner.calls == 1
    assert innermost.calls == 0
    assert outer.seconds >= inner.seconds >= 0.1


def test_threads_see_only_their_own_recorder() -> None:
    both_recording = threading.Barrier(2, timeout=30)
    found: dict[str, tools.ToolRuns] = {}

    def work(name: str) -> None:
        with tools.recording() as ran:
            both_recording.wait()
            for _ in range(3):
                tools.run(["echo", name])
            both_recording.wait()  # the other thread's runs happen while this block is open
        found[name] = ran

    with tools.recording() as main:
        threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert found["a"].argvs == [["echo", "a"]] * 3 and found["a"].calls == 3
    assert found["b"].argvs == [["echo", "b"]] * 3 and found["b"].calls == 3
    assert main.calls == 0  # a new thread starts with a fresh context


def test_workers_given_a_copied_context_add_to_its_recorders() -> None:
    # What Twisted's thread pool does: the worker runs in a copy of the caller's context.
    def work() -> None:
        for _ in range(5):
            tools.run(["true"])

    with tools.recording() as ran:
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(work,)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert ran.calls == 20 and ran.argvs == [["true"]] * 20


def test_stream_is_recorded(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.write_bytes(b"data")
    with tools.recording() as ran:
        with source.open("rb") as src, tools.stream(["cat"], stdin=src) as out:
            # A block opened while the stream runs did not see it start: not counted there.
            with tools.recording() as late:
                data = out.read()
            assert data == b"data"
        with (
            source.open("rb") as again,
            pytest.raises(ToolError),
            tools.stream(["sh", "-c", "exit 4"], stdin=again) as failing,
        ):
            failing.read()
    assert ran.argvs == [["cat"], ["sh", "-c", "exit 4"]] and ran.calls == 2
    assert ran.seconds > 0
    assert late.calls == 0
