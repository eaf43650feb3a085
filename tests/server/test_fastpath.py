"""The fast path answers byte for byte as the normal path does: the same requests, over raw
sockets, to a server with it and to one with it switched off, give the same status lines, headers
(Date and generated request IDs aside), bodies, access lines and metrics."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests
from serving import (
    VANILLA,
    Served,
    check_clean_stop,
    post_schematic,
    raw_request,
    start_server,
)

from server.app import FAST_PATH_SWITCH
from server.fastpath import parse_head

URL = "http://factory.test:8080"
PXE = f"/pxe/{VANILLA}/v1.11.5/metal-amd64"
# Every route the fast path may answer, and some it must leave to the normal path.
PATHS = [
    "/healthz",
    PXE,
    f"/pxe/{VANILLA}/v1.7.7/metal-arm64",
    f"/pxe/{VANILLA}/v1.11.5/metal-amd64-secureboot",
    "/versions",
    "/version/v1.11.5/extensions/official",
    "/version/v1.11.5/overlays/official",
    "/oci/cosign/signing-key.pub",
    "/secureboot/signing-cert.pem",
    "/",
    "/ui/index.html",
    f"/image/{VANILLA}/v1.11.5/cmdline-metal-amd64",
    "/readyz",
    "/nothing/here",
    "/ui/../versions",
    f"/pxe/{VANILLA}/v1.11.5/metal-sparc",
    "/versions?x=1",
]


@pytest.fixture(scope="module")
def pair(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Served]]:
    """[with the fast path, without it] over the same published tree."""
    # One external URL for both: PXE scripts name it.
    fast = start_server(sample_release, tmp_path_factory.mktemp("fast"), external_url=URL)
    os.environ[FAST_PATH_SWITCH] = "0"
    try:
        plain = start_server(sample_release, tmp_path_factory.mktemp("plain"), external_url=URL)
    finally:
        del os.environ[FAST_PATH_SWITCH]
    for served in (fast, plain):
        post_schematic(served, "{}")
    yield [fast, plain]
    for served in (fast, plain):
        check_clean_stop(served)


def request(method: str, path: str, version: str = "HTTP/1.1", *headers: str) -> bytes:
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def responses(raw: bytes, methods: list[str]) -> list[tuple[bytes, list[bytes], bytes]]:
    """(status line, header lines, body) of each response, Date and generated IDs blanked."""
    found = []
    for method in methods:
        head, sep, raw = raw.partition(b"\r\n\r\n")
        assert sep, f"no response head in {head[:300]!r}"
        status, *lines = head.split(b"\r\n")
        length = 0
        kept = []
        for line in lines:
            name, _, value = line.partition(b": ")
            if name.lower() == b"content-length":
                length = int(value)
            if name.lower() == b"date" or (
                name.lower() == b"x-request-id" and not value.startswith(b"t-")
            ):
                value = b"-"
            kept.append(name + b": " + value)
        if any(line.lower().startswith(b"content-disposition:") for line in kept):
            # /image answers come from each server's own store: their inodes and times differ.
            kept = [blank_file_identity(line) for line in kept]
        body = b"" if method == "HEAD" else raw[:length]
        raw = raw[len(body) :]
        found.append((status, kept, body))
    assert raw == b"", raw[:300]
    return found


def blank_file_identity(line: bytes) -> bytes:
    name = line.partition(b": ")[0]
    return name + b": -" if name.lower() in {b"etag", b"last-modified"} else line


def counts(served: Served) -> dict[str, float]:
    text = requests.get(served.url + "/metrics", timeout=30).text
    series = {}
    for line in text.splitlines():
        # The /metrics answers this reads are left out: their length is the figures' digits,
        # which the two servers' histories make differ.
        if (
            line.startswith(
                ("imagefactory_http_requests_total{", "imagefactory_http_response_bytes")
            )
            and 'route="metrics"' not in line
        ):
            name, value = line.rsplit(" ", 1)
            series[name] = float(value)
    return series


def access_lines(served: Served, marker: str) -> list[list[str]]:
    """Method, path, status and bytes of the access lines of requests whose IDs start `marker`."""
    time.sleep(0.3)  # the lines of a reactor turn are written when it ends
    lines = []
    for line in served.log.read_text(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[-1].startswith(marker):
            lines.append([*fields[2:6], fields[-1]])
    return lines


def both(pair: list[Served], data: bytes, methods: list[str]) -> None:
    fast, plain = (responses(raw_request(served, data), methods) for served in pair)
    assert fast == plain


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_one_request_per_connection(pair: list[Served], method: str, version: str) -> None:
    for path in PATHS:
        for _ in range(2):  # the first read of a small file loads it into memory
            closing = () if version == "HTTP/1.0" else ("Connection: close",)
            both(pair, request(method, path, version, *closing), [method])


def test_pipelined_keep_alive(pair: list[Served]) -> None:
    """Every path twice, GET and HEAD, in one packet, the last one closing the connection."""
    sequence = [(m, p) for p in PATHS for m in ("GET", "HEAD", "GET")]
    data = b"".join(
        request(m, p, "HTTP/1.1", f"X-Request-Id: t-{i}") for i, (m, p) in enumerate(sequence)
    )
    data += request("GET", PXE, "HTTP/1.1", "Connection: close")
    both(pair, data, [m for m, _ in sequence] + ["GET"])


def test_requests_one_packet_at_a_time(pair: list[Served]) -> None:
    """Keep-alive with each request sent after the last answer, and one split mid-head."""
    answers = []
    for served in pair:
        host, port = served.url.removeprefix("http://").split(":")
        got = []
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            for path in [PXE, "/versions", "/healthz", PXE]:
                sock.sendall(request("GET", path, "HTTP/1.1", "Origin: https://example.test"))
                data = b""
                while not responses_tail(data):
                    data += sock.recv(65536)
                got.extend(responses(data, ["GET"]))
            whole = request("GET", PXE, "HTTP/1.1", "Connection: close")
            sock.sendall(whole[:20])
            time.sleep(0.2)
            sock.sendall(whole[20:])
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
            got.extend(responses(rest, ["GET"]))
        answers.append(got)
    assert answers[0] == answers[1]


def responses_tail(data: bytes) -> list[bytes]:
    """The bodies complete in `data` so far (one response expected)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length: (\d+)", head)
    return [body] if sep and match and len(body) >= int(match[1]) else []


FALLBACKS = [
    request("GET", PXE, "HTTP/1.1", "Range: bytes=0-9", "Connection: close"),
    request("GET", "/versions", "HTTP/1.1", "Range: bytes=2-5", "Connection: close"),
    request("GET", "/versions", "HTTP/1.1", 'If-None-Match: "x"', "Connection: close"),
    request(
        "GET",
        "/versions",
        "HTTP/1.1",
        "If-Modified-Since: Sun, 06 Nov 2094 08:49:37 GMT",
        "Connection: close",
    ),
    request("POST", "/schematics", "HTTP/1.1", "Content-Length: 2", "Connection: close") + b"{}",
    request("GET", "/versions", "HTTP/1.1", "Content-Length: 0", "Connection: close"),
    request("GET", "/versions", "HTTP/1.1", "Transfer-Encoding: chunked", "Connection: close")
    + b"0\r\n\r\n",
    request("GET", "/versions", "HTTP/1.1", "Expect: 100-continue", "Connection: close"),
    request("DELETE", "/versions", "HTTP/1.1", "Connection: close"),
    request("GET", "/versions", "HTTP/2.0", "Connection: close"),
    request("GET", "/ver%73ions", "HTTP/1.1", "Connection: close"),
    request("GET", "/nothing", "HTTP/1.1", "Connection: close"),
    request("GET", "/ui/%2e%2e/x", "HTTP/1.1", "Connection: close"),
    request("GET", "/versions", "HTTP/1.1", "Bad Header: x", "Connection: close"),
    request("GET", "/versions", "HTTP/1.1", "X-Long: " + "a" * 9000, "Connection: close"),
    request("GET", "/versions", "HTTP/1.1", "X-Huge: " + "a" * 100_000),
    b"garbage\r\n\r\n",
    b"GET /versions\x00 HTTP/1.1\r\n\r\n",
    b"GET /versions HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"GET /versions HTTP/1.1\nHost: x\nConnection: close\n\n",
    b"\r\nGET /versions HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET  /versions HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /versions HTTP/1.1\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n",
    b"GET /versions HTTP/1.1\r\nX: \xff\r\nConnection: close\r\n\r\n",
    # A fast request, then one the normal path must take, then fast ones again.
    request("GET", PXE)
    + request("GET", "/versions", "HTTP/1.1", "Range: bytes=0-3")
    + request("HEAD", "/versions")
    + request("GET", PXE, "HTTP/1.1", "Connection: close"),
]


@pytest.mark.parametrize("data", FALLBACKS, ids=range(len(FALLBACKS)))
def test_fallbacks_answer_as_the_normal_path(pair: list[Served], data: bytes) -> None:
    fast, plain = (raw_request(served, data) for served in pair)
    blank = re.compile(rb"(?im)^(date|x-request-id): .*$")
    assert blank.sub(rb"\1: -", fast) == blank.sub(rb"\1: -", plain)


def test_access_lines_and_metrics(pair: list[Served]) -> None:
    before = [counts(served) for served in pair]
    marker = f"t{time.monotonic_ns()}-"
    sequence = [(m, p) for p in PATHS for m in ("GET", "HEAD", "GET")]
    data = b"".join(
        request(m, p, "HTTP/1.1", f"X-Request-Id: {marker}{i}") for i, (m, p) in enumerate(sequence)
    )
    data += request("GET", PXE, "HTTP/1.1", f"X-Request-Id: {marker}end", "Connection: close")
    for served in pair:
        raw_request(served, data)
    after = [counts(served) for served in pair]
    deltas = [
        {k: v - b.get(k, 0.0) for k, v in a.items() if v != b.get(k, 0.0)}
        for a, b in zip(after, before, strict=True)
    ]
    assert deltas[0] == deltas[1]
    assert deltas[0]['imagefactory_http_requests_total{method="GET",route="pxe",status="200"}'] >= 3
    fast_lines, plain_lines = (access_lines(served, marker) for served in pair)
    assert fast_lines == plain_lines
    assert len(fast_lines) == len(sequence) + 1


@pytest.mark.parametrize(
    ("head", "simple"),
    [
        (b"GET /versions HTTP/1.1\r\nHost: x", True),
        (b"HEAD / HTTP/1.0", True),
        (b"GET /versions HTTP/1.1\r\nhost:x  ", True),
        (b"GET /versions?x HTTP/1.1", False),
        (b"GET /v%20 HTTP/1.1", False),
        (b"POST /versions HTTP/1.1", False),
        (b"GET /versions HTTP/1.1\r\nRANGE: bytes=0-1", False),
        (b"GET /versions HTTP/1.1\r\n folded", False),
        (b"GET /versions HTTP/1.1\r\nname : x", False),
        (b"GET http://x/versions HTTP/1.1", False),
    ],
)
def test_simple_heads(head: bytes, simple: bool) -> None:
    assert (parse_head(head) is not None) == simple


def test_kept_answers_keep_to_their_headers(pair: list[Served]) -> None:
    """An answer kept for one request is not sent for another whose headers change it: Origin
    (CORS headers), the HTTP version and Connection (persistence), HEAD for GET."""
    for path in (PXE, "/versions", f"/image/{VANILLA}/v1.11.5/cmdline-metal-amd64"):
        # Built (on demand) and read into memory first: from then on the fast path answers.
        both(pair, request("GET", path, "HTTP/1.1", "Connection: close"), ["GET"])
        sequence = [
            ("GET", ()),
            ("GET", ("Origin: https://example.test",)),
            ("HEAD", ()),
            ("GET", ("Connection: keep-alive",)),
            ("GET", ("Connection: Keep-Alive", "Origin: https://example.test")),
            ("GET", ("Connection: x-other",)),
            ("GET", ()),
            ("GET", ("X-Request-Id: t-a\tb",)),  # a tab: legal in a header, sent back as is
            ("GET", ("X-Request-Id: t-a\tb",)),
        ]
        data = b"".join(request(m, path, "HTTP/1.1", *h) for m, h in sequence)
        both(pair, data + request("GET", path, "HTTP/1.1", "Connection: close"), [
            *(m for m, _ in sequence),
            "GET",
        ])  # fmt: skip
        for version, closing in (("HTTP/1.0", ()), ("HTTP/1.0", ("Connection: keep-alive",))):
            for _ in range(2):
                both(pair, request("GET", path, version, *closing, "Connection: close"), ["GET"])


def test_kept_answers_carry_their_own_ids_and_dates(pair: list[Served]) -> None:
    fast = pair[0]
    given = "a%sb%(id)s%%c"  # %-formatting in the client's ID must come back as sent
    data = request("GET", PXE) * 3 + request("GET", PXE, "HTTP/1.1", f"X-Request-Id: {given}") * 2
    raw = raw_request(fast, data + request("GET", PXE, "HTTP/1.1", "Connection: close"))
    ids = re.findall(rb"(?m)^X-Request-Id: (.*)\r$", raw)
    dates = re.findall(rb"(?m)^Date: (.*)\r$", raw)
    assert len(ids) == len(dates) == 6
    generated = [ids[i] for i in (0, 1, 2, 5)]
    assert len(set(generated)) == 4
    assert all(re.fullmatch(rb"[0-9a-f]{32}", i) for i in generated)
    assert ids[3] == ids[4] == given.encode()
    for date in dates:
        assert abs(parsedate_to_datetime(date.decode()).timestamp() - time.time()) < 60


def test_repeated_requests_are_sent_from_kept_answers(pair: list[Served]) -> None:
    fast = pair[0]
    kept = "imagefactory_http_kept_answers_total"
    for path in (PXE, f"/image/{VANILLA}/v1.11.5/cmdline-metal-amd64"):
        closing = request("GET", path, "HTTP/1.1", "Connection: close")
        # Made and kept: keep-alive and closing are two answers (Connection: close in the latter).
        raw_request(fast, request("GET", path) + closing)
        before = fast.metric(kept)
        for _ in range(3):
            raw_request(fast, closing)
        assert fast.metric(kept) == before + 3
        raw_request(fast, request("GET", path) * 3 + closing)
        assert fast.metric(kept) == before + 7
        with_origin = request(
            "GET", path, "HTTP/1.1", "Origin: https://a.test", "Connection: close"
        )
        raw_request(fast, with_origin)
        raw_request(fast, with_origin)
        assert fast.metric(kept) == before + 7
