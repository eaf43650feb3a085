"""The TFTP server with real clients (curl, atftp) and raw packets: options, windows, retransmission,
errors for malformed, duplicate and stray packets, and nothing served outside its table."""

from __future__ import annotations

import socket
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from serving import VANILLA, Served

from server.tftp import ACK, DATA, ERROR, OACK, RRQ, WRQ, BadPacket, parse_request

IPXE = Path("/usr/lib/ipxe")
MAC = "52:54:00:12:34:56"


@pytest.fixture(scope="module")
def tftp(server_factory: Callable[..., Served]) -> Served:
    return server_factory(
        pxe={
            "default": {"schematic": VANILLA, "version": "v1.11.5"},
            "hosts": {MAC: {"schematic": "1" * 64, "version": "v1.7.7", "platform": "nocloud"}},
        }
    )


def fetch_curl(
    served: Served, name: str, out: Path, *options: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", *options, "-o", str(out), f"tftp://127.0.0.1:{served.tftp_port}/{name}"],
        capture_output=True,
        timeout=60,
        check=False,
    )


def rrq(name: bytes, mode: bytes = b"octet", **options: str) -> bytes:
    packet = struct.pack("!H", RRQ) + name + b"\0" + mode + b"\0"
    for key, value in options.items():
        packet += key.encode() + b"\0" + value.encode() + b"\0"
    return packet


def client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock


def error_code(packet: bytes) -> int:
    opcode, code = struct.unpack("!HH", packet[:4])
    assert opcode == ERROR, packet
    return int(code)


@pytest.mark.parametrize("name", ["undionly.kpxe", "ipxe.efi", "snponly.efi"])
def test_curl_fetches_ipxe_binaries_with_blksize(tftp: Served, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    result = fetch_curl(tftp, name, out, "--tftp-blksize", "1428", "-v")
    assert result.returncode == 0, result.stderr.decode()
    assert out.read_bytes() == (IPXE / name).read_bytes()
    assert b"blksize parsed from OACK (1428)" in result.stderr
    assert f"tsize parsed from OACK ({out.stat().st_size})".encode() in result.stderr


def test_curl_without_options(tftp: Served, tmp_path: Path) -> None:
    out = tmp_path / "u"
    assert fetch_curl(tftp, "undionly.kpxe", out, "--tftp-no-options").returncode == 0
    assert out.read_bytes() == (IPXE / "undionly.kpxe").read_bytes()


@pytest.mark.parametrize("window", ["1", "8", "64"])
def test_atftp_with_options(tftp: Served, tmp_path: Path, window: str) -> None:
    out = tmp_path / "ipxe.efi"
    argv = [
        "atftp", "--trace",
        "--option", "blksize 1468",
        "--option", "tsize 0",
        "--option", f"windowsize {window}",
        "-g", "-r", "ipxe.efi", "-l", str(out), "127.0.0.1", str(tftp.tftp_port),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert out.read_bytes() == (IPXE / "ipxe.efi").read_bytes()
    trace = result.stdout.decode() + result.stderr.decode()
    assert "OACK" in trace and "blksize: 1468" in trace and f"windowsize: {window}" in trace


def test_chain_scripts(tftp: Served, tmp_path: Path) -> None:
    out = tmp_path / "boot.ipxe"
    assert fetch_curl(tftp, "boot.ipxe", out).returncode == 0
    base = tftp.url
    assert out.read_bytes() == (
        b"#!ipxe\n\nchain --autofree mac-${mac:hexhyp}.ipxe ||\n"
        b"chain --replace --autofree "
        + f"{base}/pxe/{VANILLA}/v1.11.5/metal-${{buildarch}}\n".encode()
    )
    host = tmp_path / "host.ipxe"
    assert fetch_curl(tftp, "mac-52-54-00-12-34-56.ipxe", host).returncode == 0
    assert host.read_bytes() == (
        b"#!ipxe\n\nchain --replace --autofree "
        + f"{base}/pxe/{'1' * 64}/v1.7.7/nocloud-${{buildarch}}\n".encode()
    )
    assert fetch_curl(tftp, "mac-52-54-00-00-00-00.ipxe", host).returncode != 0


@pytest.mark.parametrize(
    ("name", "code"),
    [
        (b"../../etc/passwd", 2),
        (b"/../etc/passwd", 2),
        (b"..\\..\\etc\\passwd", 2),
        (b"qemu/../../../etc/passwd", 2),
        (b"/etc/passwd", 1),
        (b"virtio-net.rom", 1),
        (b"nothing", 1),
    ],
)
def test_traversal_and_unknown_names(tftp: Served, name: bytes, code: int) -> None:
    with client() as sock:
        sock.sendto(rrq(name), ("127.0.0.1", tftp.tftp_port))
        packet, _ = sock.recvfrom(65536)
    assert error_code(packet) == code


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x00",
        b"\x00\x09rubbish",
        struct.pack("!H", RRQ) + b"no-terminator",
        struct.pack("!H", RRQ) + b"boot.ipxe\0",
        struct.pack("!H", RRQ) + b"boot.ipxe\0mail\0",
        struct.pack("!H", RRQ) + b"boot.ipxe\0octet\0blksize\0",
        struct.pack("!H", RRQ) + b"boot.ipxe\0octet\0blksize\x008\0BLKSIZE\x009\0",
        struct.pack("!H", RRQ) + b"\xff\xfe\0octet\0",
        struct.pack("!HH", DATA, 1) + b"data",
        struct.pack("!HH", ACK, 1),
    ],
)
def test_malformed_packets_get_illegal_operation(tftp: Served, packet: bytes) -> None:
    with client() as sock:
        sock.sendto(packet, ("127.0.0.1", tftp.tftp_port))
        answer, _ = sock.recvfrom(65536)
    assert error_code(answer) == 4


def test_write_requests_are_refused(tftp: Served) -> None:
    with client() as sock:
        sock.sendto(struct.pack("!H", WRQ) + b"x\0octet\0", ("127.0.0.1", tftp.tftp_port))
        answer, _ = sock.recvfrom(65536)
    assert error_code(answer) == 2


def test_retransmission_duplicates_and_stray_tids(tftp: Served) -> None:
    """A lost ACK gets the block again (after the timeout); a duplicate RRQ or ACK starts nothing
    new; a packet from another port gets error 5 while the transfer carries on."""
    expected = (IPXE / "undionly.kpxe").read_bytes()
    with client() as sock, client() as stray:
        request = rrq(b"undionly.kpxe", blksize="1024", timeout="1")
        sock.sendto(request, ("127.0.0.1", tftp.tftp_port))
        sock.sendto(request, ("127.0.0.1", tftp.tftp_port))  # a duplicate request
        oack, transfer = sock.recvfrom(65536)
        assert struct.unpack("!H", oack[:2])[0] == OACK
        assert b"blksize\x001024\x00" in oack and b"timeout\x001\x00" in oack
        sock.sendto(struct.pack("!HH", ACK, 0), transfer)
        first, _ = sock.recvfrom(65536)
        again, _ = sock.recvfrom(65536)  # not acked: sent again after a second
        assert first == again and first[:4] == struct.pack("!HH", DATA, 1)
        stray.sendto(struct.pack("!HH", ACK, 1), transfer)
        answer, _ = stray.recvfrom(65536)
        assert error_code(answer) == 5
        data = bytearray(first[4:])
        sock.sendto(struct.pack("!HH", ACK, 1), transfer)
        sock.sendto(struct.pack("!HH", ACK, 1), transfer)  # a duplicate ACK: no second block 2
        number = 1
        while True:
            packet, _ = sock.recvfrom(65536)
            opcode, block = struct.unpack("!HH", packet[:4])
            assert (opcode, block) == (DATA, number + 1), "a block came twice or out of order"
            number = block
            data += packet[4:]
            sock.sendto(struct.pack("!HH", ACK, block), transfer)
            if len(packet) - 4 < 1024:
                break
        assert bytes(data) == expected
        # No other transfer was started for the duplicate request.
        sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            sock.recvfrom(65536)


def test_block_numbers_roll_over(tftp: Served, tmp_path: Path) -> None:
    """ipxe.efi in 8-byte blocks needs more than 65535 of them."""
    out = tmp_path / "ipxe.efi"
    size = (IPXE / "ipxe.efi").stat().st_size
    assert size // 8 > 65535
    result = fetch_curl(tftp, "ipxe.efi", out, "--tftp-blksize", "8")
    assert result.returncode == 0, result.stderr.decode()
    assert out.read_bytes() == (IPXE / "ipxe.efi").read_bytes()


def test_transfers_are_counted(tftp: Served) -> None:
    assert tftp.metric("imagefactory_tftp_transfers_total", result="ok") >= 3
    assert tftp.metric("imagefactory_tftp_transfers_total", result="refused") >= 1


@given(st.binary(max_size=600))
def test_request_parser_never_fails_otherwise(data: bytes) -> None:
    try:
        request = parse_request(struct.pack("!H", RRQ) + data)
    except BadPacket:
        return
    assert request.filename.encode() + b"\0" in data


@given(
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=40),
    st.dictionaries(
        st.sampled_from(["blksize", "tsize", "timeout", "windowsize", "x"]),
        st.integers(0, 99999).map(str),
    ),
)
def test_request_parser_round_trips(name: str, options: dict[str, str]) -> None:
    request = parse_request(rrq(name.encode(), **options))
    assert (request.filename, request.mode, request.options) == (name, "octet", options)
