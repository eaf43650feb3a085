"""HTTP plumbing: the site with its limits, the route map, and typed errors turned into answers.

Handlers return a Response (or a FileResponse), or a coroutine of one when they may wait (an
on-demand build), or raise a FactoryError; `Router.render` is the one place that turns either into
status, headers and a plain-text body. Answers known at once never enter Deferred machinery.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from imagefactory import __version__
from imagefactory.config import ServerSettings
from imagefactory.errors import FactoryError, InvalidInput, NotFound
from server.logs import AccessLog
from server.metrics import Labels, Metrics, series_key

log = Logger()
clock = reactor


def sleep(seconds: float) -> defer.Deferred[None]:
    """A Deferred that fires after `seconds` on `clock`: the reactor thread waits without blocking."""
    d: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d


def unsent(transport: Any) -> bool:
    """Whether Twisted's buffer holds bytes not on the wire yet (True when the transport is not
    one whose buffer can be read: TLS, or a test's stand-in)."""
    buffered = getattr(transport, "dataBuffer", None)
    if buffered is None:
        return True
    return len(buffered) > transport.offset or bool(transport._tempDataLen)


SERVER_HEADER = f"Image Factory (imagefactory {__version__})".encode()
TEXT = "text/plain; charset=utf-8"
SERIES_MEMO = 1000
# rs/cors as upstream configures it.
CORS_METHODS = ("GET", "HEAD", "OPTIONS")
CORS_HEADERS = ("cache-control",)
CORS_EXPOSED = b"Content-Disposition, Content-Length, Content-Type"


class Unavailable(FactoryError):
    """Try again later (a build killed, timed out or queued out): 503 with Retry-After."""

    http_status = 503

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Redirect(FactoryError):
    http_status = 307

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class MethodNotAllowed(FactoryError):
    http_status = 405

    def __init__(self, allowed: Sequence[str]) -> None:
        super().__init__("Method Not Allowed")
        self.allowed = allowed


# A file as read: its path, device, inode, size and mtime; another file, or the same one
# rewritten or renamed over, has another.
FileIdentity = tuple[str, int, int, int, int]


def file_identity(path: str, st: os.stat_result) -> FileIdentity:
    return path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = TEXT
    headers: dict[str, str] = field(default_factory=dict)
    source: FileIdentity | None = None  # the file the body was made from, when one was


@dataclass
class FileResponse:
    """A file streamed from disk with Range and conditional requests."""

    path: Path | str
    content_type: str
    download_name: str | None = None  # set: Content-Disposition: attachment
    headers: dict[str, str] = field(default_factory=dict)


Answer = Response | FileResponse
Handler = Callable[..., Answer | Coroutine[Any, Any, Answer]]


@dataclass(frozen=True)
class Route:
    """`pattern` segments: literal, `:name` (one segment) or `*name` (the rest, one or more)."""

    name: str
    methods: tuple[str, ...]
    pattern: tuple[str, ...]
    handler: Handler

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for i, part in enumerate(self.pattern):
            if part.startswith("*"):
                if i >= len(segments):
                    return None
                params[part[1:]] = "/".join(segments[i:])
                return params
            if i >= len(segments):
                return None
            if part.startswith(":"):
                if not segments[i]:
                    return None
                params[part[1:]] = segments[i]
            elif part != segments[i]:
                return None
        return params if len(segments) == len(self.pattern) else None


def route(name: str, methods: str, path: str, handler: Handler) -> Route:
    # "/" is one empty segment, as path_segments splits it.
    pattern = tuple(path.strip("/").split("/")) if path.strip("/") else ("",)
    return Route(name, tuple(methods.split(",")), pattern, handler)


class HttpDate:
    """The Date header's value, formatted once a second rather than once a request."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.value, cls.second = http.datetimeToString(second), second
        return cls.value


# Request IDs: a random prefix per process and a counter, unique without a syscall per request.
_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):016x}"


def path_segments(raw: bytes) -> tuple[str, ...]:
    """Decoded segments of a request path; encoded slashes, NUL, `.` and `..` are bad input."""
    # Short paths (every real one) are split once; the memo's size stays bounded.
    return _split_memo(raw) if len(raw) <= 512 else _split(raw)


def _split(raw: bytes) -> tuple[str, ...]:
    if not raw.startswith(b"/"):
        raise InvalidInput(f"invalid request path: {raw[:200]!r}")
    segments = []
    for part in raw[1:].split(b"/"):
        try:
            text = unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("invalid request path: not UTF-8") from None
        if "/" in text or "\x00" in text or "\\" in text or text in {".", ".."}:
            raise InvalidInput("invalid request path")
        segments.append(text)
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()  # a trailing slash names the same resource (/v2/)
    return tuple(segments)


_split_memo = lru_cache(maxsize=1024)(_split)


def client_request_id(given: Sequence[bytes] | None) -> str | None:
    """The request ID a client sent, if it is one to use (short, ASCII)."""
    if given and 0 < len(given[0]) <= 128 and given[0].isascii():
        return given[0].decode()
    return None


class FactoryRequest(server.Request):
    """A request that carries an ID and a start time, and refuses bodies over the cap."""

    site: FactorySite

    @property
    def owner(self) -> FactorySite:
        """The site, known from the channel before `process` sets `self.site`."""
        channel = self.channel
        assert isinstance(channel, FactoryChannel)
        return channel.site

    def __init__(self, channel: FactoryChannel, queued: Any = None) -> None:
        super().__init__(channel)
        self.started = time.monotonic()
        self.route_name = "none"
        self.refused = False
        self._body_bytes = 0
        self.request_id = new_request_id()

    def gotLength(self, length: int | None) -> None:
        limit = self.owner.settings.max_body_bytes
        if length is not None and length > limit:
            self.refuse(413, f"request body larger than {limit} bytes")
        super().gotLength(0 if self.refused else length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self._body_bytes += len(data)
        limit = self.owner.settings.max_body_bytes
        if self._body_bytes > limit:
            self.refuse(413, f"request body larger than {limit} bytes")
            return
        super().handleContentChunk(data)

    def refuse(self, status: int, message: str) -> None:
        """Answer before the request is complete (too large, too slow) and close."""
        if self.refused:
            return
        self.refused = True
        body = message.encode() + b"\n"
        reason = http.RESPONSES.get(status, b"Error")
        transport = self.channel.transport
        assert transport is not None
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"X-Content-Type-Options: nosniff\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, reason, len(body))
            + body
        )
        transport.loseConnection()
        self.owner.metrics.add(
            "imagefactory_http_requests_total", route="refused", method="-", status=str(status)
        )
        log.info("- - {status} refused: {message}", status=status, message=message)

    def connectionLost(self, reason: Failure) -> None:
        """A client gone before its answer was finished still gets its access line: the status
        and bytes sent so far, or 499 (nginx's "client closed request") before any."""
        site = getattr(self, "site", None)  # set when the request was routed
        super().connectionLost(reason)
        if isinstance(site, FactorySite) and not self.finished and not self.refused:
            if not self.startedWriting:
                self.setResponseCode(499)
            site.log(self)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        channel = self.channel
        assert isinstance(channel, FactoryChannel)
        channel.request_complete()
        if self.refused:
            return
        self.adopt_request_id()
        super().requestReceived(command, path, version)

    def adopt_request_id(self) -> None:
        """The client's X-Request-Id, when it sent a usable one."""
        given = client_request_id(self.requestHeaders.getRawHeaders(b"x-request-id"))
        if given is not None:
            self.request_id = given

    def stamp(self) -> None:
        """The headers every answer starts with."""
        self.setHeader(b"server", SERVER_HEADER)
        self.setHeader(b"date", HttpDate.now())

    def process(self) -> None:
        """The site's one resource rendered directly: the Router routes on `path` itself."""
        if self.path == b"*":
            super().process()
            return
        self.site = self.owner
        self.stamp()
        self.prepath, self.postpath = [], []
        try:
            self.render(self.site.resource)
        except BaseException:
            self.processingFailed(Failure())


class FactoryChannel(http.HTTPChannel):
    """An HTTP channel whose requests must arrive whole within `request_timeout` (no slowloris)."""

    site: FactorySite
    _deadline: IDelayedCall | None = None
    _receiving = False  # a request has begun arriving and is not complete yet
    _host: Any = None

    def getHost(self) -> Any:
        # Asked by every request; the local address of a connection never changes.
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.connections += 1
        self.site.metrics.set("imagefactory_http_connections", self.site.connections)

    def dataReceived(self, data: bytes) -> None:
        self.note_arrival()
        super().dataReceived(data)

    def note_arrival(self) -> None:
        """Bytes of a request arrived: it must now arrive whole within `request_timeout`."""
        if not self._receiving and not self._handlingRequest:
            # One timer per connection, moved forward per request: cheaper than one per request.
            self._receiving = True
            timeout = self.site.settings.request_timeout
            if self._deadline is not None and self._deadline.active():
                self._deadline.reset(timeout)
            else:
                self._deadline = clock.callLater(timeout, self._too_slow)

    def request_complete(self) -> None:
        self._receiving = False

    def _too_slow(self) -> None:
        self._deadline = None
        if not self._receiving:
            return
        if self.requests and isinstance(self.requests[-1], FactoryRequest):
            self.requests[-1].refuse(408, "request not received in time")
        elif self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.request_complete()
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self.site.connections -= 1
        self.site.metrics.set("imagefactory_http_connections", self.site.connections)
        super().connectionLost(reason)


class FactorySite(server.Site):
    """The site: a cap on open connections and one log line per request."""

    requestFactory = FactoryRequest  # type: ignore[assignment]
    protocol = FactoryChannel  # type: ignore[assignment]

    def __init__(self, root: resource.Resource, settings: ServerSettings, metrics: Metrics) -> None:
        super().__init__(root, timeout=settings.idle_timeout)
        self.settings = settings
        self.metrics = metrics
        self.connections = 0
        self.access = AccessLog(log, clock)
        self._series: dict[tuple[str, str, str], tuple[Labels, Labels]] = {}

    def _series_keys(self, route: str, method: str, status: str) -> tuple[Labels, Labels]:
        """The two series a request counts in, kept per (route, method, status)."""
        keys = (
            series_key(
                "imagefactory_http_requests_total", route=route, method=method, status=status
            ),
            series_key("imagefactory_http_response_bytes_total", route=route),
        )
        if len(self._series) < SERIES_MEMO:  # methods are the client's: keep the memo bounded
            self._series[(route, method, status)] = keys
        return keys

    def startFactory(self) -> None:
        super().startFactory()
        # Connections dropped while the reactor shuts down log after the factory stopped, and no
        # reactor turn is left to write them out.
        clock.addSystemEventTrigger("after", "shutdown", self.access.flush)

    def stopFactory(self) -> None:
        self.access.flush()
        super().stopFactory()

    def buildProtocol(self, addr: Any) -> Any:
        if self.connections >= self.settings.max_connections:
            self.metrics.add("imagefactory_http_connections_refused_total")
            return None
        return super().buildProtocol(addr)

    def log(self, request: http.Request) -> None:
        assert isinstance(request, FactoryRequest)
        if request.refused:
            return
        self.record(
            request.route_name,
            method_bytes=request.method,
            uri=request.uri,
            code=request.code,
            sent=request.sentLength,
            started=request.started,
            request_id=request.request_id,
        )

    def record(
        self,
        route: str,
        *,
        method_bytes: bytes,
        uri: bytes,
        code: int,
        sent: int,
        started: float,
        request_id: str,
    ) -> None:
        """A request's access line and its counts in the metrics."""
        ms = (time.monotonic() - started) * 1000
        method = method_bytes.decode("ascii", "replace")
        path = uri.decode("ascii", "replace")[:300]
        status = str(code)
        keys = self._series.get((route, method, status))
        if keys is None:
            keys = self._series_keys(route, method, status)
        self.metrics.add_series("imagefactory_http_requests_total", keys[0])
        self.metrics.add_series("imagefactory_http_response_bytes_total", keys[1], sent)
        line = f"{method} {path} {status} {sent} {ms:.1f}ms {request_id}"
        if not line.isprintable():  # one line per request, whatever the client sent
            line = line.encode("unicode_escape").decode("ascii")
        self.access.add(line)


def error_text(exc: FactoryError) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or "error"


class Router(resource.Resource):
    """The URL map: every route in one table, every answer and error written here."""

    isLeaf = True

    def __init__(self, routes: Sequence[Route], send_file: Callable[..., None]) -> None:
        super().__init__()
        self.routes = routes
        self.send_file = send_file
        # The routes a path's first segment can match, in table order (first match wins).
        literal = {r.pattern[0] for r in routes if r.pattern[0][:1] not in {":", "*"}}
        self._any_first = [r for r in routes if r.pattern[0][:1] in {":", "*"}]
        self._by_first = {
            first: [r for r in routes if r.pattern[0] == first or r in self._any_first]
            for first in literal
        }

    def render(self, request: server.Request) -> bytes | int:
        assert isinstance(request, FactoryRequest)
        self.begin(request)
        method = request.method.decode("ascii", "replace")
        if method == "OPTIONS" and request.getHeader(b"origin"):
            return self._preflight(request)
        try:
            answer = self._dispatch(request, method)
            if isinstance(answer, Response | FileResponse):
                self.answer(answer, request)
                return server.NOT_DONE_YET
        except Exception:
            self._fail(Failure(), request)
            return server.NOT_DONE_YET
        d = defer.Deferred.fromCoroutine(answer)
        d.addCallback(self.answer, request)
        d.addErrback(self._fail, request)
        return server.NOT_DONE_YET

    def begin(self, request: FactoryRequest) -> None:
        """The headers every routed answer carries."""
        request.setHeader(b"x-request-id", request.request_id.encode())
        self._cors(request)

    def find(self, path: bytes, method: str) -> tuple[Route, dict[str, str]]:
        """The route that answers `method` on `path` and its parameters, or the error to send."""
        segments = path_segments(path)
        allowed: list[str] = []
        for candidate in self._by_first.get(segments[0], self._any_first):
            params = candidate.match(segments)
            if params is None:
                continue
            if method not in candidate.methods:
                allowed.extend(candidate.methods)
                continue
            return candidate, params
        if allowed:
            raise MethodNotAllowed(allowed)
        raise NotFound("404 page not found")

    def _dispatch(
        self, request: FactoryRequest, method: str
    ) -> Answer | Coroutine[Any, Any, Answer]:
        found, params = self.find(request.path, method)
        request.route_name = found.name
        return found.handler(request, **params)

    def answer(self, result: Response | FileResponse, request: FactoryRequest) -> None:
        """Send `result`: its status, headers and body (a file's through `send_file`)."""
        if request.finished or request._disconnected:
            return
        if isinstance(result, FileResponse):
            self.send_file(request, result)
            return
        request.setResponseCode(result.status)
        request.setHeader(b"content-type", result.content_type.encode())
        for name, value in result.headers.items():
            request.setHeader(name.encode(), value.encode())
        request.setHeader(b"content-length", str(len(result.body)).encode())
        if request.method != b"HEAD":
            request.write(result.body)
        request.finish()

    def _fail(self, failure: Failure, request: FactoryRequest) -> None:
        exc = failure.value
        if isinstance(exc, defer.CancelledError) or request._disconnected:
            return
        if isinstance(exc, FactoryError):
            status, message = exc.http_status, error_text(exc)
        else:
            log.failure("internal error on {uri}", failure, uri=request.uri)
            status, message = 500, "internal server error"
        if request.startedWriting:
            request.loseConnection()
            return
        headers = {"X-Content-Type-Options": "nosniff"}
        if isinstance(exc, Unavailable):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, MethodNotAllowed):
            headers["Allow"] = ", ".join(dict.fromkeys(exc.allowed))
        if isinstance(exc, Redirect):
            headers["Location"] = exc.location
        self.answer(Response(message.encode() + b"\n", status, TEXT, headers), request)

    def _cors(self, request: FactoryRequest) -> None:
        if request.getHeader(b"origin"):
            request.setHeader(b"access-control-allow-origin", b"*")
            request.setHeader(b"access-control-expose-headers", CORS_EXPOSED)
            request.setHeader(b"vary", b"Origin")

    def _preflight(self, request: FactoryRequest) -> bytes:
        wanted = (request.getHeader(b"access-control-request-method") or b"").decode()
        headers = (request.getHeader(b"access-control-request-headers") or b"").decode()
        asked = [h.strip().lower() for h in headers.split(",") if h.strip()]
        request.setHeader(b"vary", b"Origin, Access-Control-Request-Method")
        request.setResponseCode(204)
        if wanted in CORS_METHODS and all(h in CORS_HEADERS for h in asked):
            request.setHeader(b"access-control-allow-methods", wanted.encode())
            if asked:
                request.setHeader(b"access-control-allow-headers", ", ".join(asked).encode())
        else:
            for name in (b"access-control-allow-origin", b"access-control-expose-headers"):
                request.responseHeaders.removeHeader(name)
        request.route_name = "preflight"
        return b""
