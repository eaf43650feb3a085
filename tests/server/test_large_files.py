"""Large files (over the in-memory size) as response bodies: handed to the kernel with sendfile on
plain sockets, read through memory on TLS; either way every byte in order, ranges, pipelined
answers behind a slow reader, and nothing left open when clients go away."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from serving import Served, curl, post_schematic, stop_server

ASSET = "metal-amd64.iso"


def iso_url(served: Served) -> str:
    schematic_id = post_schematic(served, "customization:\n  extraKernelArgs:\n    - large=1\n")
    return f"/image/{schematic_id}/v1.11.5/{ASSET}"


def split_responses(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) of each response in `raw`, by Content-Length."""
    found = []
    while raw:
        head, sep, raw = raw.partition(b"\r\n\r\n")
        assert sep, head[:300]
        length = int(re.search(rb"(?im)^content-length: (\d+)\r?$", head)[1])  # type: ignore[index]
        found.append((head, raw[:length]))
        raw = raw[length:]
    return found


def test_pipelined_bodies_behind_a_slow_reader(served: Served) -> None:
    """Each answer's head goes out before its body, though the last body filled the socket: a
    reader with a small buffer pipelines three requests."""
    url = iso_url(served)
    whole = served.get(url).content
    assert len(whole) > 1 << 20
    host, port = served.url.removeprefix("http://").split(":")
    requests_sent = (
        f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n"
        f"GET {url} HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-200999\r\n\r\n"
        f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.settimeout(60)
        sock.connect((host, int(port)))
        sock.sendall(requests_sent)
        received = bytearray()
        while chunk := sock.recv(4096):
            received += chunk
    answers = split_responses(bytes(received))
    assert [head.split(b"\r\n", 1)[0] for head, _ in answers] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 206 Partial Content",
        b"HTTP/1.1 200 OK",
    ]
    assert answers[0][1] == whole
    assert answers[1][1] == whole[1000:201000]
    assert answers[2][1] == whole


def open_files(pid: int) -> list[str]:
    """What the process has open: files by path, sockets and pipes by kind."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            found.append(re.sub(r"\[\d+\]$", "", os.readlink(f"/proc/{pid}/fd/{fd}")))
    return sorted(found)


def test_nothing_left_open_when_clients_go_away(served: Served) -> None:
    """Clients that close mid-body (raw sockets, so none is kept open by a client library): the
    file and the socket's duplicate are closed, and the bytes sent are counted."""
    url = iso_url(served)
    whole = served.get(url).content
    time.sleep(0.5)
    before = open_files(served.proc.pid)
    host, port = served.url.removeprefix("http://").split(":")
    for first in (0, 5, 1 << 20):
        for i in range(4):
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                head = f"Host: x\r\nRange: bytes={first}-\r\nX-Request-Id: gone-{first}-{i}"
                sock.sendall(f"GET {url} HTTP/1.1\r\n{head}\r\n\r\n".encode())
                got = sock.recv(65536)
                assert got.startswith(b"HTTP/1.1 20")
    deadline = time.monotonic() + 10
    while open_files(served.proc.pid) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_files(served.proc.pid) == before
    assert served.get(url, headers={"Range": "bytes=5-"}).content == whole[5:]
    # Each gets its access line, with the bytes sent before the client went.
    cut_short = [line.split() for line in served.log.read_text().splitlines() if " gone-" in line]
    assert all(f[2:5] == ["GET", url, "206"] and int(f[5]) < len(whole) - 5 for f in cut_short)
    assert len(cut_short) == 12, cut_short


def self_signed(where: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = where / "tls.key", where / "tls.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_https_endpoint_streams_through_memory(
    server_factory: Callable[..., Served], tmp_path: Path
) -> None:
    """An ssl: endpoint (no sendfile through TLS): the built file's bytes, and ranges."""
    key_path, cert_path = self_signed(tmp_path)
    tls = server_factory(tls=(key_path, cert_path))
    posted = requests.post(
        tls.url + "/schematics", data=b"customization: {}\n", verify=str(cert_path), timeout=30
    )
    assert posted.status_code == 201
    url = f"{tls.url}/image/{posted.json()['id']}/v1.11.5/{ASSET}"
    port = tls.url.rsplit(":", 1)[1]
    trust = ("--resolve", f"localhost:{port}:127.0.0.1", "--cacert", str(cert_path))
    got = curl("--fail", *trust, url).stdout
    built = next(tls.store.rglob(f"ondemand/image/*/v1.11.5/{ASSET}")).read_bytes()
    assert len(got) > 1 << 20
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(built).hexdigest()
    assert curl("--fail", *trust, "-r", "100-65635", url).stdout == built[100:65636]
    assert curl("--fail", *trust, "-r", "-70000", url).stdout == built[-70000:]
    assert curl("--fail", *trust, tls.url.replace("https", "http", 1), check=False).returncode


def test_a_download_cut_by_shutdown_is_logged(server_factory: Callable[..., Served]) -> None:
    """SIGTERM mid-body: the connection is dropped, and its access line is written before exit."""
    served = server_factory()
    url = iso_url(served)
    whole = served.get(url).content
    host, port = served.url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect((host, int(port)))
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nX-Request-Id: cut-by-stop\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        log = stop_server(served)
    lines = [line.split() for line in log.splitlines() if line.endswith(" cut-by-stop")]
    assert len(lines) == 1, log[-3000:]
    assert lines[0][2:5] == ["GET", url, "200"]
    assert 0 < int(lines[0][5]) < len(whole)
