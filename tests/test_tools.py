"""The tool runner: argv logged, failures typed with the stderr tail, hung tools killed."""

from __future__ import annotations

import logging
import time

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
