"""Answers the fast path made, kept as bytes with the Date and the request ID left open.

A kept answer is sent again while what made it is the same: the site's state (the published
generation and the lock) and the file its body was made from (the same path, device, inode, size
and mtime as when it was read). Only requests whose headers cannot change the answer but for its
ID share one: no Origin (CORS headers), and the same persistence (Connection: close, as Twisted
reads it).
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from dataclasses import dataclass

from server.web import FileIdentity, file_identity

BUDGET = 32 * 1024 * 1024  # bytes of kept answers at most, their keys and bookkeeping included
MAX_KEPT = 4096  # answers at most (paths are the client's: spellings of one file are many)
ENTRY_OVERHEAD = 512  # bytes an entry holds besides its head, body, path and source path
_DATE = b"%(date)s"
_ID = b"%(id)s"

Key = tuple[bytes, bytes, bytes, bool]


@dataclass(frozen=True)
class Kept:
    state: Hashable
    source: FileIdentity
    head: bytes  # %-template: `_DATE` and `_ID` where this answer had its own
    body: bytes
    route: str
    status: int
    sent: int  # body bytes, as the access line and the metrics count them
    persistent: bool

    def bytes_for(self, date: bytes, request_id: bytes) -> bytes:
        return self.head % {b"date": date, b"id": request_id} + self.body


def key_of(
    method: bytes, path: bytes, version: bytes, headers: dict[bytes, list[bytes]]
) -> Key | None:
    """What a kept answer is found by, or None when the request's headers could change it."""
    if b"origin" in headers:
        return None
    connection = headers.get(b"connection")
    # As HTTPChannel.checkPersistence reads it: the first Connection line's tokens.
    tokens = connection[0].lower().split(b" ") if connection else []
    return method, path, version, b"close" in tokens


def head_template(response: bytes, date: bytes, request_id: bytes) -> tuple[bytes, bytes] | None:
    """(head template, body) of a response written with `date` and `request_id`; None unless
    its head has each of those lines exactly once."""
    end = response.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = response[:end].split(b"\r\n")
    slots = {
        b"Date: " + date: b"Date: " + _DATE,
        b"X-Request-Id: " + request_id: b"X-Request-Id: " + _ID,
    }
    if any(lines.count(line) != 1 for line in slots):
        return None
    head = b"\r\n".join(slots.get(line, line.replace(b"%", b"%%")) for line in lines)
    return head + b"\r\n\r\n", response[end + 4 :]


class KeptAnswers:
    """Kept answers by key, up to a byte budget (all dropped when it is reached)."""

    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self._held = 0
        self._kept: dict[Key, Kept] = {}

    def get(self, key: Key, state: Hashable) -> Kept | None:
        kept = self._kept.get(key)
        if kept is None or kept.state != state:
            return None
        path = kept.source[0]
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        return kept if file_identity(path, st) == kept.source else None

    def put(self, key: Key, kept: Kept) -> None:
        previous = self._kept.pop(key, None)
        if previous is not None:
            self._held -= _size(key, previous)
        size = _size(key, kept)
        if size > self.budget:
            return
        if self._held + size > self.budget or len(self._kept) >= MAX_KEPT:
            self._kept.clear()
            self._held = 0
        self._held += size
        self._kept[key] = kept

    def __len__(self) -> int:
        return len(self._kept)


def _size(key: Key, kept: Kept) -> int:
    return len(key[1]) + len(kept.source[0]) + len(kept.head) + len(kept.body) + ENTRY_OVERHEAD
