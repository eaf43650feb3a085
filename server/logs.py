"""Access lines, and the server's log observer: Twisted's classic text lines, access lines cheap.

A request's access line is formatted once; the lines of one reactor turn go out as one log event
(`ACCESS_FORMAT`, one line each) and so one write, and timestamps are formatted once a second.
"""

from __future__ import annotations

import time
from typing import IO, Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import FileLogObserver, LogEvent, Logger, formatEventAsClassicLogText

ACCESS_FORMAT = "{access}"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # Twisted's classic stamp


class AccessLog:
    """Collects the access lines of a reactor turn and logs them together when it ends."""

    def __init__(self, logger: Logger, clock: IReactorTime) -> None:
        self.logger = logger
        self.clock = clock
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) == 1:
            self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            self.logger.info(ACCESS_FORMAT, access="\n".join(lines))


class _Stamp:
    """`when` formatted as Twisted's classic log lines do, cached for the current second."""

    second = -1
    text = "-"

    def __call__(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = int(when)
        if second != self.second:
            self.text, self.second = time.strftime(TIME_FORMAT, time.localtime(second)), second
        return self.text


def event_formatter() -> Any:
    stamp = _Stamp()

    def format_event(event: LogEvent) -> str | None:
        if event.get("log_format") == ACCESS_FORMAT and "log_system" not in event:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{level.name if level else '-'}"
            prefix = f"{stamp(event.get('log_time'))} [{system}] "
            return "".join(f"{prefix}{line}\n" for line in event["access"].split("\n"))
        return formatEventAsClassicLogText(event, formatTime=stamp)

    return format_event


def text_observer(stream: IO[Any]) -> FileLogObserver:
    return FileLogObserver(stream, event_formatter())
