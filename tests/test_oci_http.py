"""Registry HTTP behaviour distribution 2.8 can't show: Bearer token flow and Link pagination.

A small real HTTP server on loopback plays a token-auth registry with paged tag lists.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imagefactory.errors import BuildError, InvalidInput
from imagefactory.oci.layout import LayoutTarget, open_target
from imagefactory.oci.registry import RegistryTarget, _parse_challenge

TAGS = [f"v1.{i}.0" for i in range(5)]
USER, PASSWORD, TOKEN = "robot", "pw", "tok-123"


class FakeRegistry(BaseHTTPRequestHandler):
    token_requests: list[dict[str, list[str]]] = []  # noqa: RUF012

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        host = f"127.0.0.1:{self.server.server_address[1]}"  # type: ignore[index]
        if url.path == "/token":
            type(self).token_requests.append(query)
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._send(401, {"errors": [{"code": "DENIED", "message": "bad credentials"}]})
                return
            self._send(200, {"token": TOKEN})
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = (
                f'Bearer realm="http://{host}/token",service="fake",'
                'scope="repository:siderolabs/imager:pull"'
            )
            self._send(401, {"errors": [{"code": "UNAUTHORIZED"}]}, {"WWW-Authenticate": challenge})
            return
        if url.path == "/v2/siderolabs/imager/tags/list":
            last = query.get("last", [""])[0]
            rest = [t for t in TAGS if t > last]
            page, more = rest[:2], rest[2:]
            headers = {}
            if more:
                nxt = f"/v2/siderolabs/imager/tags/list?n=2&last={page[-1]}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            self._send(200, {"name": "siderolabs/imager", "tags": page}, headers)
            return
        self._send(404, {"errors": [{"code": "NAME_UNKNOWN", "message": "no such repo"}]})


@pytest.fixture
def fake() -> Iterator[str]:
    FakeRegistry.token_requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_token_flow_and_pagination(fake: str) -> None:
    target = RegistryTarget(fake, insecure=True, username=USER, password=PASSWORD)
    assert target.list_tags("siderolabs/imager") == TAGS
    assert FakeRegistry.token_requests == [
        {"scope": ["repository:siderolabs/imager:pull"], "service": ["fake"]}
    ]
    assert target.attempts == 4  # the challenged request, then three pages with the token


def test_token_refused_names_user_and_image(fake: str) -> None:
    target = RegistryTarget(fake, insecure=True, username=USER, password="nope")
    with pytest.raises(BuildError) as err:
        target.list_tags("siderolabs/imager")
    assert f"registry {fake} (siderolabs/imager:latest): token server" in str(err.value)
    assert "refused user 'robot': DENIED: bad credentials" in str(err.value)


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"',
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "reg",
                "scope": "repository:a/b:pull,push",
            },
        ),
        ('Basic realm="test-registry"', "basic", {"realm": "test-registry"}),
        ("Bearer realm=https://x/t,service=s", "bearer", {"realm": "https://x/t", "service": "s"}),
        ("", "", {}),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    assert _parse_challenge(header) == (scheme, params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": "not a host"}, "not a registry host"),
        ({"host": "r.example", "retries": 0}, "retries must be at least 1"),
        ({"host": "r.example", "username": "u"}, "give both username and password"),
    ],
)
def test_registry_target_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        RegistryTarget(**kwargs)  # type: ignore[arg-type]


def test_https_unless_insecure() -> None:
    assert RegistryTarget("ghcr.io").base == "https://ghcr.io"
    assert RegistryTarget("127.0.0.1:5000", insecure=True).base == "http://127.0.0.1:5000"


def test_open_target(tmp_path: object) -> None:
    assert isinstance(open_target("ghcr.io"), RegistryTarget)
    assert isinstance(open_target(f"oci-layout:{tmp_path}/new"), LayoutTarget)
    assert isinstance(open_target(str(tmp_path)), LayoutTarget)
    for bad in ("", "oci-layout:", "/no/such/dir", "bad host"):
        with pytest.raises(InvalidInput, match="not an image target"):
            open_target(bad)


def _manifest(layer_digest: str) -> bytes:
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2}
    config["digest"] = "sha256:" + hashlib.sha256(b"{}").hexdigest()
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 0}
    layer["digest"] = layer_digest
    body = {"schemaVersion": 2, "config": config, "layers": [layer]}
    body["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    return json.dumps(body, sort_keys=True).encode()


GENUINE = _manifest("sha256:" + hashlib.sha256(b"genuine").hexdigest())
SUBSTITUTE = _manifest("sha256:" + hashlib.sha256(b"substitute").hexdigest())
GENUINE_DIGEST = "sha256:" + hashlib.sha256(GENUINE).hexdigest()
SUBSTITUTE_DIGEST = "sha256:" + hashlib.sha256(SUBSTITUTE).hexdigest()


class LyingRegistry(BaseHTTPRequestHandler):
    """Answers every manifest request with the substitute, its headers consistent with it."""

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, with_body: bool) -> None:
        if "/manifests/" not in self.path:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Content-Length", str(len(SUBSTITUTE)))
        self.send_header("Docker-Content-Digest", SUBSTITUTE_DIGEST)
        self.end_headers()
        if with_body:
            self.wfile.write(SUBSTITUTE)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)


@pytest.fixture
def liar() -> Iterator[RegistryTarget]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LyingRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = RegistryTarget(f"127.0.0.1:{server.server_address[1]}", insecure=True)
        with target:
            yield target
    finally:
        server.shutdown()
        server.server_close()


def test_substituted_manifest_is_refused_by_its_content(liar: RegistryTarget) -> None:
    # The header agrees with the substitute, so only hashing the body against the
    # requested digest can notice.
    with pytest.raises(BuildError) as err:
        liar.get_manifest("siderolabs/imager", GENUINE_DIGEST)
    assert f"siderolabs/imager@{GENUINE_DIGEST}: manifest digest mismatch" in str(err.value)
    assert f"expected {GENUINE_DIGEST}, content hashes to {SUBSTITUTE_DIGEST}" in str(err.value)


def test_substituted_digest_is_refused_on_resolve(liar: RegistryTarget) -> None:
    with pytest.raises(BuildError, match=f"registry answered digest {SUBSTITUTE_DIGEST}"):
        liar.resolve("siderolabs/imager", GENUINE_DIGEST)


def test_liar_serves_a_consistent_substitute_by_tag(liar: RegistryTarget) -> None:
    # By tag there is nothing to compare against but the header: the body must match it.
    descriptor, data = liar.get_manifest("siderolabs/imager", "v1.0.0")
    assert (descriptor.digest, data) == (SUBSTITUTE_DIGEST, SUBSTITUTE)
