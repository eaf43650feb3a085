"""Bad input over HTTP: each gets its 4xx with a plain-text reason, never a 500 or a traceback,
and the server keeps serving (the module's server log is checked when it stops)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from serving import VANILLA, Served, post_schematic, raw_request

MALFORMED_SCHEMATICS = [
    (b"", "schematic is empty"),
    (b"customization: {unknownField: 1}", "field unknownField not found"),
    (b"customization:\n  meta:\n    - key: 256\n      value: x\n", "into uint8"),
    (b"customization: [", "yaml: line"),
    (b"owner: someone\n", "only supported in Enterprise edition"),
    (b"customization:\n  bootloader: auto\n", "auto does not belong to BootloaderKind"),
    (b"\xff\xfe\x00garbage", "yaml"),
    (b"customization:\n  extraKernelArgs: {a: b}\n", "cannot construct !!map into []string"),
]
ALIAS_BOMB = b"""\
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
customization: {extraKernelArgs: *g}
"""


@pytest.fixture(scope="module", autouse=True)
def vanilla(served: Served) -> None:
    post_schematic(served, "{}")


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def assert_plain_error(answer: requests.Response, status: int, text: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text in answer.text
    assert answer.text.endswith("\n") and "Traceback" not in answer.text


@pytest.mark.parametrize(("body", "message"), MALFORMED_SCHEMATICS)
def test_malformed_schematics(served: Served, body: bytes, message: str) -> None:
    answer = requests.post(served.url + "/schematics", data=body, timeout=30)
    assert_plain_error(answer, 400, message)


def test_alias_bomb_is_refused(served: Served) -> None:
    started = time.monotonic()
    answer = requests.post(served.url + "/schematics", data=ALIAS_BOMB, timeout=30)
    assert answer.status_code == 400, answer.text
    assert time.monotonic() - started < 5


def test_oversized_bodies(served: Served) -> None:
    big = b"customization: {}\n" + b"#" * (2 << 20)
    answer = requests.post(served.url + "/schematics", data=big, timeout=30)
    assert_plain_error(answer, 413, "request body larger than")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap counts what arrives
        for _ in range(40):
            yield b"#" * 65536

    try:
        answer = requests.post(served.url + "/schematics", data=chunks(), timeout=30)
        assert answer.status_code == 413
    except requests.ConnectionError:
        pass  # the server may close before the client has finished sending
    assert served.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        b"/image/../../etc/passwd",
        b"/image/%2e%2e/%2e%2e/etc/passwd",
        b"/schematics/..%2f..%2fetc%2fpasswd",
        b"/image/" + VANILLA.encode() + b"/v1.11.5/kernel-amd64%00.iso",
        b"/image/" + VANILLA.encode() + b"/v1.11.5/..%5ckernel-amd64",
        b"/pxe/" + VANILLA.encode() + b"/v1.11.5/%2e%2e",
        b"/image/%ff%fe/v1/x",
    ],
)
def test_path_traversal_is_bad_input(served: Served, path: bytes) -> None:
    answer = raw_request(
        served, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status_of(answer) == 400, answer[:300]
    assert b"root:" not in answer


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        (f"/image/{VANILLA}/v1.11/kernel-amd64", 400, "invalid Talos version"),
        (f"/image/{VANILLA}/banana/kernel-amd64", 400, "invalid Talos version"),
        (f"/image/{VANILLA}/v1.8.0/kernel-amd64", 404, "version 1.8.0 is not available"),
        (f"/image/{VANILLA}/v1.11.5/kernel-sparc", 400, 'invalid architecture: "sparc"'),
        (f"/image/{VANILLA}/v1.11.5/metal.iso", 400, 'invalid platform-arch: "metal"'),
        (f"/image/{VANILLA}/v1.11.5/nonsense", 400, 'invalid profile path: "nonsense"'),
        (f"/image/{VANILLA}/v1.7.7/metal-amd64-secureboot.iso", 400, "secure"),
        (f"/image/{VANILLA}/v1.11.5/kernel-amd64?filename=a%22b", 400, "invalid filename"),
        (f"/pxe/{VANILLA}/v1.11.5/metal", 400, 'invalid platform-arch: "metal"'),
        ("/nothing/here", 404, "404 page not found"),
        ("/image/only/two", 404, "404 page not found"),
        ("/v2/installer/x/manifests/v1", 404, 'schematic ID "x" not found'),
        (f"/v2/bogus/{VANILLA}/manifests/v1.11.5", 400, "invalid image: bogus"),
        (f"/v2/a/b/c/{VANILLA}/manifests/v1", 404, "unknown registry path"),
    ],
)
def test_bad_paths(served: Served, path: str, status: int, message: str) -> None:
    assert_plain_error(served.get(path), status, message)


def test_method_not_allowed(served: Served) -> None:
    answer = requests.delete(served.url + "/versions", timeout=10)
    assert_plain_error(answer, 405, "Method Not Allowed")
    assert "GET" in answer.headers["Allow"]


def test_slowloris_gets_408_and_the_server_keeps_serving(served: Served) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(b"GET /versions HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = b""
        for _ in range(10):  # a header line now and then, never the end of the headers
            time.sleep(0.5)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        while chunk := sock.recv(65536):
            answer += chunk
    assert status_of(answer) == 408
    assert time.monotonic() - started < 10
    assert served.get("/versions").status_code == 200


def test_connection_cap(server_factory: Callable[..., Served]) -> None:
    capped = server_factory(limits={"connections": 4, "requestSeconds": 30})
    host, port = capped.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.3)
        with pytest.raises(requests.ConnectionError):
            requests.get(capped.url + "/healthz", timeout=5)
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert capped.get("/healthz").status_code == 200
    assert capped.metric("imagefactory_http_connections_refused_total") >= 1


def test_server_still_serves_after_the_corpus(served: Served) -> None:
    assert served.get("/versions").content == b'["v1.7.7","v1.11.5"]\n'
    assert (
        served.metric("imagefactory_http_requests_total", method="GET", route="image", status="500")
        == 0
    )


def test_readyz_needs_a_readable_lock(served: Served) -> None:
    lock = served.config.parent / "sources.lock.json"
    saved = lock.read_bytes()
    try:
        lock.write_text("{ not json")
        answer = served.get("/readyz")
        assert answer.status_code == 503
        assert answer.text.startswith("not ready: ")
        assert served.get("/healthz").status_code == 200
    finally:
        lock.write_bytes(saved)
    assert served.get("/readyz").status_code == 200
