"""The fast path: plain GETs and HEADs of answers held in memory, answered without Twisted's
request parsing.

A connection's bytes are held until a request head is whole; a head that is simple by a strict
reading (GET or HEAD, HTTP/1.x, no body, no conditional or range headers, a plain path) whose route
answers from memory is answered here, by the same code the normal path runs (the Router's headers,
`send_file`'s small-file answer, Twisted's response writing, the site's access log and metrics).
Anything else, and everything after it on that connection, goes to the HTTP channel as received.
An answer made here is kept (server.answers) and sent again, with its own Date and request ID,
while the state and the file it was made from are unchanged.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from imagefactory.config import ServerSettings
from server.answers import Kept, KeptAnswers, Key, head_template, key_of
from server.files import send_from_memory
from server.metrics import Metrics
from server.web import (
    FactoryChannel,
    FactoryRequest,
    FactorySite,
    FileIdentity,
    FileResponse,
    HttpDate,
    Response,
    Router,
    client_request_id,
    new_request_id,
    unsent,
)

MAX_HEAD = 8192  # longer heads go to Twisted, which has its own limits and answers
# The routes whose answers are in memory: a Response made at once, or a file SmallFiles holds.
RESPONSE_ROUTES = frozenset({"healthz", "pxe"})
FILE_ROUTES = frozenset(
    {"versions", "extensions", "overlays", "signing-key", "secureboot-cert", "ui", "image"}
)
# Headers whose presence needs the normal path: bodies, conditions, ranges, upgrades.
REFUSED = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"range",
        b"if-range",
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"expect",
        b"upgrade",
    }
)
_REQUEST_LINE = re.compile(rb"(GET|HEAD) (/[A-Za-z0-9._~/:@+,=-]*) (HTTP/1\.[01])")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*((?:[!-~](?:[ -~\t]*[!-~])?)?)[ \t]*")

Head = tuple[bytes, bytes, bytes, dict[bytes, list[bytes]]]


def parse_head(head: bytes) -> Head | None:
    """(method, path, version, headers by lower-case name) of a simple head, else None."""
    lines = head.split(b"\r\n")
    first = _REQUEST_LINE.fullmatch(lines[0])
    if first is None or len(lines) > 100:
        return None
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        header = _HEADER.fullmatch(line)
        if header is None:
            return None
        name = header[1].lower()
        if name in REFUSED:
            return None
        headers.setdefault(name, []).append(header[2])
    return first[1], first[2], first[3], headers


class _Received:
    """A request's headers as `Request.getHeader` and `checkPersistence` read them."""

    def __init__(self, headers: dict[bytes, list[bytes]]) -> None:
        self._headers = headers

    def getRawHeaders(self, name: bytes, default: Any = None) -> Any:
        return self._headers.get(name.lower(), default)


class _Collected:
    """Stands in for the transport while an answer is written, to send it in one piece."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.parts.extend(data)


class FastRequest(FactoryRequest):
    """A request made from a parsed head; it answers through the inherited response code."""

    def __init__(
        self,
        channel: FactoryChannel,
        method: bytes,
        path: bytes,
        version: bytes,
        headers: dict[bytes, list[bytes]],
    ) -> None:
        # Not Request.__init__: of what it sets up, these answers use only what is set here.
        self.channel = channel
        self.transport = channel.transport
        self.requestHeaders = _Received(headers)  # type: ignore[assignment]
        self.responseHeaders = Headers()
        self.notifications = []
        self.cookies = []
        self.received_cookies = {}
        self.method, self.uri, self.path, self.clientproto = method, path, path, version
        self.args = {}
        self.queued = 0
        self.started = time.monotonic()
        self.route_name = "none"
        self.refused = False
        self._body_bytes = 0
        self.request_id = new_request_id()
        self.site = channel.site
        self.prepath, self.postpath = [], []

    def _cleanup(self) -> None:
        """Never queued on the channel: nothing to tell it."""


class FastChannel(FactoryChannel):
    """The site's channel with the fast path in front of Twisted's request parsing."""

    site: FastSite

    _fast = True  # still answering here; False once a request went to Twisted
    _closing = False
    _held = b""

    def dataReceived(self, data: bytes) -> None:
        if not self._fast:
            super().dataReceived(data)
            return
        if self._closing:
            return
        self.resetTimeout()
        self.note_arrival()
        held = self._held + data
        if held.count(b"\n") != held.count(b"\r\n"):
            self._held = held  # bare line ends: Twisted's reading of them decides
            self._fall_back()
            return
        while True:
            end = held.find(b"\r\n\r\n")
            if end < 0:
                self._held = held
                if len(held) > MAX_HEAD:
                    self._fall_back()
                return
            kept = self._answer(held[:end])
            if kept is None:
                self._held = held
                self._fall_back()
                return
            held = held[end + 4 :]
            if not kept:
                self._closing = True
                self._held = b""
                self.loseConnection()
                return
            if not held:
                self._held = b""
                return
            self.note_arrival()

    def _answer(self, head: bytes) -> bool | None:
        """Answer one head: None when the normal path must, else whether the connection stays."""
        parsed = parse_head(head)
        if parsed is None:
            return None
        method, path, version, headers = parsed
        key = key_of(method, path, version, headers)
        state = self.site.state() if key is not None else None
        if key is not None and state is not None:
            kept = self.site.kept.get(key, state)
            if kept is not None:
                self._send_kept(kept, method, path, headers)
                return kept.persistent
        router = self.site.resource
        assert isinstance(router, Router)
        try:
            route, params = router.find(path, method.decode())
        except Exception:
            return None
        if route.name not in RESPONSE_ROUTES and route.name not in FILE_ROUTES:
            return None
        request = FastRequest(self, method, path, version, headers)
        try:
            answer = route.handler(request, **params)
        except Exception:
            return None
        if isinstance(answer, Coroutine):
            answer.close()
            return None
        if isinstance(answer, Response) != (route.name in RESPONSE_ROUTES):
            return None
        # As the normal path orders it: persistence, the request's ID, then the answer's headers.
        persistent: bool = self.checkPersistence(request, version)
        request.adopt_request_id()
        request.stamp()
        router.begin(request)
        request.route_name = route.name
        transport, collected = self.transport, _Collected()
        self.transport = collected  # type: ignore[assignment]
        try:
            source: FileIdentity | None
            if isinstance(answer, FileResponse):
                source = send_from_memory(request, answer)
                if source is None:
                    return None
            else:
                router.answer(answer, request)
                source = answer.source
        finally:
            self.transport = transport
        self.request_complete()
        data = b"".join(collected.parts)
        if key is not None and state is not None and source is not None and request.code == 200:
            self._keep(key, state, source, data, request, persistent=persistent)
        self._send(data)
        return persistent

    def _keep(
        self,
        key: Key,
        state: Hashable,
        source: FileIdentity,
        data: bytes,
        request: FastRequest,
        *,
        persistent: bool,
    ) -> None:
        date = request.responseHeaders.getRawHeaders(b"date", [b""])[0]
        parts = head_template(data, date, request.request_id.encode())
        if parts is not None:
            kept = Kept(
                state, source, *parts, request.route_name, request.code, request.sentLength,
                persistent,
            )  # fmt: skip
            self.site.kept.put(key, kept)

    def _send_kept(
        self, kept: Kept, method: bytes, path: bytes, headers: dict[bytes, list[bytes]]
    ) -> None:
        """Send a kept answer with this request's Date and ID (the head's parsing let no CR or LF
        into it), log and count it as the normal path does."""
        started = time.monotonic()
        request_id = client_request_id(headers.get(b"x-request-id")) or new_request_id()
        data = kept.bytes_for(HttpDate.now(), request_id.encode())
        self.site.record(
            kept.route,
            method_bytes=method,
            uri=path,
            code=kept.status,
            sent=kept.sent,
            started=started,
            request_id=request_id,
        )
        self.site.metrics.add_series("imagefactory_http_kept_answers_total", ())
        self.request_complete()
        self._send(data)

    def _send(self, data: bytes) -> None:
        """`data` sent at once when nothing is waiting before it: Twisted's write would wait for
        the next turn of the reactor, and ask the poller twice, to send it."""
        transport: Any = self.transport
        sock = getattr(transport, "socket", None)
        if sock is not None and not (unsent(transport) or transport.disconnecting):
            # Full, or gone: the transport finds out and says so.
            with contextlib.suppress(OSError):
                data = data[sock.send(data) :]
        if data:
            transport.write(data)

    def _fall_back(self) -> None:
        """From now on Twisted parses this connection, starting with the bytes held."""
        self._fast = False
        held, self._held = self._held, b""
        if held:
            super().dataReceived(held)

    def _too_slow(self) -> None:
        if self._fast and self._held:
            self._fall_back()  # Twisted's request, partly received, gets the 408
        super()._too_slow()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._held = b""
        super().connectionLost(reason)


class FastSite(FactorySite):
    """The site with the fast path: its channel, and the answers it keeps.

    `state` gives what every answer depends on besides its own file (the published generation,
    the lock); None from it, or an OSError, and no answer is kept or reused.
    """

    protocol = FastChannel

    def __init__(
        self,
        root: Router,
        settings: ServerSettings,
        metrics: Metrics,
        state: Callable[[], Hashable | None],
    ) -> None:
        super().__init__(root, settings, metrics)
        self._state = state
        self.kept = KeptAnswers()

    def state(self) -> Hashable | None:
        try:
            return self._state()
        except OSError:
            return None
