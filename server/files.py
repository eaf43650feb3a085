"""Files streamed to HTTP clients: a pull producer, Range, ETag/If-None-Match, If-Modified-Since.

A large file is opened once per request, and a small one is answered from bytes read under the
identity it has now, so a generation switch or a rebuild never mixes two files' bytes in one
answer; a client that stops reading for `stalled` seconds is disconnected.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, IPullProducer, IWriteDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from zope.interface import implementer

from imagefactory.errors import NotFound
from server.web import FactoryRequest, FileIdentity, FileResponse, clock, file_identity, unsent

CHUNK = 1024 * 1024
SEND_AT_ONCE = 16 * 1024 * 1024  # sendfile(2) per wake-up at most: other connections get turns
CLIENT_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ETIMEDOUT})
log = Logger()
SMALL_FILE = 64 * 1024  # files up to this size are held in memory (SmallFiles)
SMALL_BUDGET = 32 * 1024 * 1024  # bytes of small files held at most
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@lru_cache(maxsize=4096)
def _http_date(mtime: int) -> bytes:
    return formatdate(mtime, usegmt=True).encode()


def _etag(st: os.stat_result) -> str:
    # Published files are hard links into a content store: one inode per content.
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def _not_modified(request: FactoryRequest, etag: str, mtime: int) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present; If-Modified-Since otherwise."""
    none_match = request.getHeader(b"if-none-match")
    if none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in none_match.decode("latin-1").split(",")]
        return "*" in tags or etag in tags
    since = request.getHeader(b"if-modified-since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since.decode("latin-1"))
    except (TypeError, ValueError):
        return False
    return mtime <= when.timestamp()


def _byte_range(request: FactoryRequest, size: int, etag: str) -> tuple[int, int] | str | None:
    """(first, last) of a satisfiable single range; None: the whole file; "416": unsatisfiable."""
    header = request.getHeader(b"range")
    if header is None:
        return None
    if_range = request.getHeader(b"if-range")
    if if_range is not None and if_range.decode("latin-1").strip() != etag:
        return None
    match = _RANGE.fullmatch(header.decode("latin-1").strip())
    if match is None:
        return None  # several ranges, or another unit: the whole file is a valid answer
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        length = int(last_text)
        if length == 0:
            return "416"
        return max(size - length, 0), size - 1
    first = int(first_text)
    if first >= size:
        return "416"
    last = int(last_text) if last_text else size - 1
    if first > last:
        return None
    return first, min(last, size - 1)


class _Body:
    """[offset, offset+length) of an open file as a response body; a client that takes none of it
    for `stalled` seconds is cut off, and one that goes away ends it."""

    def __init__(
        self, request: FactoryRequest, fd: int, offset: int, length: int, stalled: float
    ) -> None:
        self.request: FactoryRequest | None = request
        self.fd: int | None = fd
        self.offset = offset
        self.remaining = length
        self.stalled = stalled
        self.watchdog: IDelayedCall = clock.callLater(stalled, self._stall)

    def start(self) -> None:
        assert self.request is not None
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())

    def stopProducing(self) -> None:
        if self.watchdog.active():
            self.watchdog.cancel()
        self.request = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _stall(self) -> None:
        request = self.request
        if request is not None:
            channel = request.channel
            assert isinstance(channel, http.HTTPChannel)
            channel.forceAbortClient()
        self.stopProducing()


@implementer(IPullProducer)
class _Sender(_Body):
    """The body read into memory a chunk at a time as the transport asks for more (a transport
    that is not a plain socket: TLS)."""

    def start(self) -> None:
        assert self.request is not None
        self.request.registerProducer(self, False)
        super().start()

    def resumeProducing(self) -> None:
        request = self.request
        if request is None:
            return
        self.watchdog.reset(self.stalled)
        assert self.fd is not None
        data = os.pread(self.fd, min(CHUNK, self.remaining), self.offset)
        if not data and self.remaining:
            # The file shrank under us; end the connection rather than send a short body.
            request.unregisterProducer()
            request.loseConnection()
            self.stopProducing()
            return
        self.offset += len(data)
        self.remaining -= len(data)
        if self.remaining == 0:
            request.unregisterProducer()
            request.write(data)
            request.finish()
            self.stopProducing()
        else:
            request.write(data)


@implementer(IWriteDescriptor)
class _SocketSender(_Body):
    """The body handed to the kernel with sendfile(2) whenever the socket can take more: no copy
    through this process. The reactor watches a duplicate of the connection's descriptor, so the
    transport's own registration (reading, its buffer) is left alone."""

    def __init__(
        self,
        request: FactoryRequest,
        fd: int,
        offset: int,
        length: int,
        stalled: float,
        *,
        transport: tcp.Connection,
    ) -> None:
        super().__init__(request, fd, offset, length, stalled)
        self.transport = transport
        self.sock: int | None = None

    def start(self) -> None:
        assert self.request is not None
        self.request.write(b"")  # the head, into the transport's buffer: it goes first
        super().start()
        if self.request is None:  # gone already
            return
        self.sock = os.dup(self.transport.fileno())
        clock.addWriter(self)

    def fileno(self) -> int:
        return -1 if self.sock is None else self.sock

    def logPrefix(self) -> str:
        return "sendfile"

    def doWrite(self) -> None:
        request, transport = self.request, self.transport
        if request is None or self.sock is None or self.fd is None:
            return
        # Twisted's buffer (the head, an earlier answer) must be on the wire before the body.
        if unsent(transport):
            return
        try:
            sent = os.sendfile(self.sock, self.fd, self.offset, min(self.remaining, SEND_AT_ONCE))
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in CLIENT_GONE:
                log.error("sendfile of {uri} failed: {error}", uri=request.uri, error=exc)
            # Gone, or not to be sent this way: the transport ends the request.
            self.stopProducing()
            transport.abortConnection()
            return
        if sent == 0:
            # The file shrank under us; end the connection rather than send a short body.
            self.stopProducing()
            request.loseConnection()
            return
        self.watchdog.reset(self.stalled)
        self.offset += sent
        self.remaining -= sent
        request.sentLength += sent
        if self.remaining == 0:
            self.stopProducing()
            request.finish()

    def connectionLost(self, reason: Failure) -> None:
        """The reactor gave up on the descriptor (shutting down, or doWrite raised): the request
        cannot be finished, so its connection ends too."""
        unfinished = self.request is not None
        self.stopProducing()
        if unfinished:
            self.transport.abortConnection()

    def stopProducing(self) -> None:
        if self.sock is not None:
            clock.removeWriter(self)
            os.close(self.sock)
            self.sock = None
        super().stopProducing()


def _body(request: FactoryRequest, fd: int, first: int, length: int) -> _Body:
    """The sender for this connection: sendfile on a plain socket, else reads through memory."""
    stalled = request.site.settings.stalled_timeout
    transport = request.channel.transport
    if isinstance(transport, tcp.Connection) and not transport.TLS:
        return _SocketSender(request, fd, first, length, stalled, transport=transport)
    return _Sender(request, fd, first, length, stalled)


@dataclass(frozen=True)
class _Small:
    """A small file held in memory with the identity of the open file its bytes came from."""

    identity: FileIdentity
    data: bytes
    etag: str
    mtime: int


class SmallFiles:
    """Small published files (versions, catalogs, UI pages) answered from memory: one stat per
    request, compared with the identity the bytes were read under, so a file renamed over the
    old one (a rebuild) or another generation's path is read again."""

    def __init__(self, budget: int = SMALL_BUDGET) -> None:
        self.budget = budget
        self._held = 0
        self._files: dict[str, _Small] = {}

    def get(self, path: str) -> _Small | None:
        held = self._files.get(path)
        if held is None:
            return None
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        return held if file_identity(path, st) == held.identity else None

    def load(self, path: str, fd: int, st: os.stat_result) -> _Small | None:
        """The whole file read from `fd` (status `st`); None if it shrank while being read."""
        data = os.pread(fd, st.st_size, 0)
        if len(data) != st.st_size:
            return None
        held = _Small(file_identity(path, st), data, _etag(st), int(st.st_mtime))
        if self._held + len(data) > self.budget:
            self._files.clear()
            self._held = 0
        previous = self._files.pop(path, None)
        self._held += len(data) - (len(previous.data) if previous else 0)
        self._files[path] = held
        return held


SMALL = SmallFiles()


def _open(path: str) -> tuple[int, os.stat_result]:
    """A descriptor on a regular file and its status; NotFound for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"{os.path.basename(path)}: not found") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotFound(f"{os.path.basename(path)}: not found")
    return fd, st


def send_file(request: FactoryRequest, answer: FileResponse) -> None:
    """Answer with the file, or 304/416; a large body streams (sendfile, or reads over TLS)."""
    if send_from_memory(request, answer) is not None:
        return
    path = os.fspath(answer.path)
    fd, st = _open(path)
    handed = False  # to a _Sender, which closes it
    try:
        if st.st_size <= SMALL_FILE:
            small = SMALL.load(path, fd, st)
            if small is None:  # the file shrank under us: never a short body
                request.loseConnection()
                return
            _answer(request, answer, small.etag, small.mtime, small.data)
            return
        wanted = _answer(request, answer, _etag(st), int(st.st_mtime), st.st_size)
        if wanted is not None:
            first, length = wanted
            sender = _body(request, fd, first, length)
            handed = True
            sender.start()
    finally:
        if not handed:
            os.close(fd)


def send_from_memory(request: FactoryRequest, answer: FileResponse) -> FileIdentity | None:
    """Answer from the bytes held in memory, if the file is held as it is now, and give the
    identity they were read under; else None and nothing sent."""
    small = SMALL.get(os.fspath(answer.path))
    if small is None:
        return None
    _answer(request, answer, small.etag, small.mtime, small.data)
    return small.identity


def _answer(
    request: FactoryRequest, answer: FileResponse, etag: str, mtime: int, body: bytes | int
) -> tuple[int, int] | None:
    """Headers, then 304, 416, or the (partial) body: `body` is the bytes, or the size of a file
    still to be sent, and then the answer is the (first, length) to send from it."""
    size = body if isinstance(body, int) else len(body)
    request.setHeader(b"content-type", answer.content_type.encode())
    request.setHeader(b"etag", etag.encode())
    request.setHeader(b"last-modified", _http_date(mtime))
    request.setHeader(b"accept-ranges", b"bytes")
    for name, value in answer.headers.items():
        request.setHeader(name.encode(), value.encode())
    if answer.download_name is not None:
        request.setHeader(
            b"content-disposition", f'attachment; filename="{answer.download_name}"'.encode()
        )
    if _not_modified(request, etag, mtime):
        request.setResponseCode(304)
        request.responseHeaders.removeHeader(b"content-type")
        request.finish()
        return None
    wanted = _byte_range(request, size, etag)
    if wanted == "416":
        request.setResponseCode(416)
        request.setHeader(b"content-range", f"bytes */{size}".encode())
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        message = b"requested range not satisfiable\n"
        request.setHeader(b"content-length", str(len(message)).encode())
        if request.method != b"HEAD":
            request.write(message)
        request.finish()
        return None
    first, length = 0, size
    if isinstance(wanted, tuple):
        first, length = wanted[0], wanted[1] - wanted[0] + 1
        request.setResponseCode(206)
        request.setHeader(b"content-range", f"bytes {wanted[0]}-{wanted[1]}/{size}".encode())
    request.setHeader(b"content-length", str(length).encode())
    if request.method == b"HEAD" or length == 0:
        request.write(b"")
        request.finish()
        return None
    if isinstance(body, int):
        return first, length
    request.write(body if length == size else body[first : first + length])
    request.finish()
    return None
