"""The server's log observer: Twisted's classic text lines, with the per-request access line cheap.

An access event carries its line already formatted (`ACCESS_FORMAT`), and timestamps are formatted
once a second, so a request costs one string and one write rather than a format-string walk.
"""

from __future__ import annotations

import time
from typing import IO, Any

from twisted.logger import FileLogObserver, LogEvent, formatEventAsClassicLogText

ACCESS_FORMAT = "{access}"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # Twisted's classic stamp


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
            return f"{stamp(event.get('log_time'))} [{system}] {event['access']}\n"
        return formatEventAsClassicLogText(event, formatTime=stamp)

    return format_event


def text_observer(stream: IO[Any]) -> FileLogObserver:
    return FileLogObserver(stream, event_formatter())
