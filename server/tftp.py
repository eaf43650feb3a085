"""A read-only TFTP server on Twisted UDP: RFC 1350, options (RFC 2347) blksize (2348), timeout and
tsize (2349), windowsize (RFC 7440); each transfer on its own port, retransmission with backoff.

It serves a fixed table of names (iPXE binaries, generated chain scripts): nothing outside it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import protocol, reactor
from twisted.internet.interfaces import IDelayedCall, IReactorUDP
from twisted.logger import Logger

from server.metrics import Metrics
from server.web import clock

log = Logger()
udp = IReactorUDP(reactor)

RRQ, WRQ, DATA, ACK, ERROR, OACK = range(1, 7)
# RFC 1350 error codes (and RFC 2347's 8).
E_UNDEFINED, E_NOT_FOUND, E_ACCESS, E_DISK_FULL, E_ILLEGAL, E_UNKNOWN_TID = range(6)
E_OPTION = 8

DEFAULT_BLOCK = 512
MIN_BLOCK, MAX_BLOCK = 8, 65464
MAX_WINDOW = 64
DEFAULT_TIMEOUT = 1.0
MAX_TIMEOUT = 8.0
RETRIES = 5
MAX_TRANSFERS = 256
MAX_NETASCII_FILE = 16 << 20
MAX_PACKET = 65536


def packet_error(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode() + b"\0"


@dataclass(frozen=True)
class ReadRequest:
    filename: str
    mode: str
    options: dict[str, str]


class BadPacket(Exception):
    pass


def parse_request(packet: bytes) -> ReadRequest:
    """An RRQ's filename, mode and options (names lower-cased); BadPacket when malformed."""
    fields = packet[2:].split(b"\0")
    if len(fields) < 3 or fields[-1] != b"" or len(fields) % 2 != 1:
        raise BadPacket("malformed request")
    try:
        texts = [f.decode("ascii") for f in fields[:-1]]
    except UnicodeDecodeError:
        raise BadPacket("request is not ASCII") from None
    filename, mode, *rest = texts
    options: dict[str, str] = {}
    for name, value in zip(rest[::2], rest[1::2], strict=True):
        if name.lower() in options:
            raise BadPacket(f"option {name} given twice")
        options[name.lower()] = value
    return ReadRequest(filename, mode.lower(), options)


def _number(options: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """An option's value clamped to what the server offers; None when absent or not a number."""
    text = options.get(name)
    if text is None or not text.isdigit():
        return None
    value = int(text)
    return None if value < low else min(value, high)


class Source:
    """Bytes of one served file, read by offset."""

    def __init__(self, data: bytes | None = None, path: Path | None = None) -> None:
        self.data = data
        self.handle = path.open("rb") if path is not None else None
        self.size = len(data) if data is not None else os.fstat(self.handle.fileno()).st_size  # type: ignore[union-attr]

    def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + length]
        assert self.handle is not None
        return os.pread(self.handle.fileno(), length, offset)

    def netascii(self) -> Source:
        raw = self.read(0, self.size)
        self.close()
        return Source(raw.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n"))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


class Transfer(protocol.DatagramProtocol):
    """One read transfer, on its own port, to one client address and port."""

    noisy = False

    def __init__(
        self,
        server: TftpServer,
        peer: tuple[str, int],
        source: Source,
        *,
        block: int,
        window: int,
        timeout: float,
        oack: dict[str, str],
    ) -> None:
        self.server = server
        self.peer = peer
        self.source = source
        self.block = block
        self.window = window
        self.timeout = timeout
        self.oack = oack
        self.blocks = source.size // block + 1  # the last block is short, possibly empty
        self.awaiting_oack_ack = bool(oack)
        self.acked = 0
        self.sent_upto = 0
        self.retries = 0
        self.timer: IDelayedCall | None = None
        self.finished = False

    def startProtocol(self) -> None:
        self._send_current()

    def _send_current(self) -> None:
        if self.awaiting_oack_ack:
            options = b"".join(
                k.encode() + b"\0" + v.encode() + b"\0" for k, v in self.oack.items()
            )
            self._send(struct.pack("!H", OACK) + options)
        else:
            last = min(self.acked + self.window, self.blocks)
            for number in range(self.acked + 1, last + 1):
                offset = (number - 1) * self.block
                data = self.source.read(offset, self.block)
                self._send(struct.pack("!HH", DATA, number % 65536) + data)
                self.server.metrics.add("imagefactory_tftp_bytes_total", len(data))
            self.sent_upto = last
        self._arm()

    def _send(self, packet: bytes) -> None:
        assert self.transport is not None
        self.transport.write(packet, self.peer)

    def _arm(self) -> None:
        delay = min(self.timeout * (2**self.retries), MAX_TIMEOUT)
        if self.timer is not None and self.timer.active():
            self.timer.reset(delay)
        else:
            self.timer = clock.callLater(delay, self._expired)

    def _expired(self) -> None:
        self.retries += 1
        if self.retries > RETRIES:
            self._end("timeout", packet_error(E_UNDEFINED, "timed out"))
            return
        self._send_current()

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr != self.peer:
            assert self.transport is not None
            self.transport.write(packet_error(E_UNKNOWN_TID, "unknown transfer ID"), addr)
            return
        if len(data) < 4:
            self._end("error", packet_error(E_ILLEGAL, "malformed packet"))
            return
        opcode, number = struct.unpack("!HH", data[:4])
        if opcode == ERROR:
            self._end("aborted", None)
            return
        if opcode != ACK:
            self._end("error", packet_error(E_ILLEGAL, "only ACK is expected here"))
            return
        if self.awaiting_oack_ack:
            if number == 0:  # the client took the options
                self.awaiting_oack_ack = False
                self.retries = 0
                self._send_current()
            return
        # The 16-bit block number, taken as the nearest block at or after what is acked.
        advance = (number - self.acked) % 65536
        if advance == 0 or self.acked + advance > self.sent_upto:
            return  # a duplicate or stray ACK: never answered (Sorcerer's Apprentice)
        self.acked += advance
        self.retries = 0
        if self.acked >= self.blocks:
            self._end("ok", None)
            return
        self._send_current()

    def _end(self, result: str, packet: bytes | None) -> None:
        if self.finished:
            return
        self.finished = True
        if packet is not None:
            self._send(packet)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.source.close()
        self.server.transfer_ended(self, result)
        assert self.transport is not None
        self.transport.stopListening()


class TftpServer(protocol.DatagramProtocol):
    """The listening port: read requests start transfers; anything else gets its error."""

    def __init__(self, files: Mapping[str, bytes | Path], interface: str, metrics: Metrics) -> None:
        self.files = files
        self.interface = interface
        self.metrics = metrics
        self.transfers: dict[tuple[str, int], Transfer] = {}

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._request(data, addr)
        except BadPacket as exc:
            self._refuse(addr, E_ILLEGAL, str(exc))

    def _refuse(self, addr: tuple[str, int], code: int, message: str) -> None:
        assert self.transport is not None
        self.transport.write(packet_error(code, message), addr)
        self.metrics.add("imagefactory_tftp_transfers_total", result="refused")
        log.info("tftp {addr} refused: {message}", addr=f"{addr[0]}:{addr[1]}", message=message)

    def _request(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 2:
            raise BadPacket("malformed packet")
        (opcode,) = struct.unpack("!H", data[:2])
        if opcode == WRQ:
            self._refuse(addr, E_ACCESS, "read-only server")
            return
        if opcode != RRQ:
            raise BadPacket("illegal TFTP operation")
        if addr in self.transfers:
            return  # the client resent its request; the transfer under way answers it
        request = parse_request(data)
        if request.mode not in {"octet", "netascii"}:
            raise BadPacket(f"unsupported mode {request.mode}")
        if len(self.transfers) >= MAX_TRANSFERS:
            self._refuse(addr, E_UNDEFINED, "too many transfers; try again")
            return
        name = request.filename.removeprefix("/")
        if "\\" in name or any(part in {"", ".", ".."} for part in name.split("/")):
            self._refuse(addr, E_ACCESS, "access violation")
            return
        entry = self.files.get(name)
        if entry is None:
            self._refuse(addr, E_NOT_FOUND, "file not found")
            return
        source = Source(data=entry) if isinstance(entry, bytes) else Source(path=entry)
        if request.mode == "netascii":
            if source.size > MAX_NETASCII_FILE:
                source.close()
                self._refuse(addr, E_ILLEGAL, "file too large for netascii")
                return
            source = source.netascii()
        self._start(addr, request, source, name)

    def _start(
        self, addr: tuple[str, int], request: ReadRequest, source: Source, name: str
    ) -> None:
        opts = request.options
        oack: dict[str, str] = {}
        block = _number(opts, "blksize", MIN_BLOCK, MAX_BLOCK)
        if block is not None:
            oack["blksize"] = str(block)
        timeout = _number(opts, "timeout", 1, 255)
        if timeout is not None and int(opts["timeout"]) <= 255:
            oack["timeout"] = str(timeout)
        if "tsize" in opts:
            oack["tsize"] = str(source.size)
        window = _number(opts, "windowsize", 1, MAX_WINDOW)
        if window is not None:
            oack["windowsize"] = str(window)
        transfer = Transfer(
            self,
            addr,
            source,
            block=block or DEFAULT_BLOCK,
            window=window or 1,
            timeout=float(timeout or DEFAULT_TIMEOUT),
            oack=oack,
        )
        self.transfers[addr] = transfer
        udp.listenUDP(0, transfer, self.interface, MAX_PACKET)
        log.info(
            "tftp {addr} RRQ {name} {options}", addr=f"{addr[0]}:{addr[1]}", name=name, options=oack
        )

    def transfer_ended(self, transfer: Transfer, result: str) -> None:
        self.transfers.pop(transfer.peer, None)
        self.metrics.add("imagefactory_tftp_transfers_total", result=result)
