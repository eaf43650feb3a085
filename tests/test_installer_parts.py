"""The installer's small parts: the apt mirror read from the machine's sources, docker config
credentials, the registry setting, and docker-archive reading that checks every digest."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.config import PushRegistry
from imagefactory.errors import BuildError, InvalidInput
from imagefactory.oci.credentials import registry_credentials
from imagefactory.oci.digest import sha256_bytes
from imagefactory.oci.dockerarchive import ArchiveLayer, read_docker_archive, write_docker_archive
from imagefactory.sample.suite import machine_mirror


def apt_dir(tmp_path: Path, sources: dict[str, str], one_line: str = "") -> Path:
    (tmp_path / "sources.list.d").mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (tmp_path / "sources.list.d" / name).write_text(text)
    if one_line:
        (tmp_path / "sources.list").write_text(one_line)
    return tmp_path


def test_mirror_from_deb822_sources_skips_security(tmp_path: Path) -> None:
    text = (
        "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.test/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.test/debian/\nSuites: bookworm\nComponents: main\n"
    )
    assert (
        machine_mirror(apt_dir(tmp_path, {"debian.sources": text})) == "http://mirror.test/debian"
    )


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    line = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://one.test/debian bookworm main\n"
    assert machine_mirror(apt_dir(tmp_path, {}, line)) == "http://one.test/debian"


def test_no_mirror_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="no Debian mirror"):
        machine_mirror(apt_dir(tmp_path, {"x.sources": "Types: deb-src\nURIs: http://s.test/\n"}))


def test_this_machines_mirror_is_read() -> None:
    assert machine_mirror().startswith(("http://", "https://", "file:"))


def docker_config(tmp_path: Path, config: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_credentials_inline_and_by_url(tmp_path: Path) -> None:
    auth = base64.b64encode(b"user:pa:ss").decode()
    path = docker_config(tmp_path, {"auths": {"https://reg.test:5000": {"auth": auth}}})
    assert registry_credentials("reg.test:5000", path) == ("user", "pa:ss")
    assert registry_credentials("other.test", path) is None
    path = docker_config(tmp_path, {"auths": {"reg.test": {"username": "u", "password": "p"}}})
    assert registry_credentials("reg.test", path) == ("u", "p")
    assert registry_credentials("reg.test", tmp_path / "missing.json") is None


def test_credentials_from_a_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-testing"
    helper.parent.mkdir()
    helper.write_text(
        '#!/bin/sh\nread host\n[ "$host" = reg.test ] || exit 1\n'
        'echo "{\\"Username\\":\\"h-user\\",\\"Secret\\":\\"h-secret\\"}"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")
    path = docker_config(tmp_path, {"credHelpers": {"reg.test": "testing"}})
    assert registry_credentials("reg.test", path) == ("h-user", "h-secret")
    path = docker_config(tmp_path, {"credsStore": "testing"})
    assert registry_credentials("nothing.test", path) is None  # the helper has none for it
    path = docker_config(tmp_path, {"credsStore": "absent"})
    with pytest.raises(InvalidInput, match="docker-credential-absent is not installed"):
        registry_credentials("reg.test", path)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{not json", "cannot read docker config"),
        ("[]", "not a JSON object"),
        ('{"auths": {"reg.test": {"auth": "***"}}}', "not base64"),
    ],
)
def test_bad_docker_config(tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(InvalidInput, match=message):
        registry_credentials("reg.test", tmp_path / "config.json")


@pytest.mark.parametrize(
    ("url", "host", "repository"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000", "installer/x"),
        ("reg.test/talos/", "reg.test", "talos/installer/x"),
        ("oci://reg.test:443/a/b", "reg.test:443", "a/b/installer/x"),
    ],
)
def test_push_registry_parse(url: str, host: str, repository: str) -> None:
    registry = PushRegistry.parse(url)
    assert registry.host == host and registry.repository("installer/x") == repository


def _archive(tmp_path: Path, layer: bytes) -> Path:
    blob = tmp_path / "layer"
    blob.write_bytes(layer)
    out = tmp_path / "image.tar"
    write_docker_archive(
        out, b'{"architecture":"amd64"}', [ArchiveLayer(sha256_bytes(layer), blob)], ["a:b"]
    )
    return out


@given(st.binary(min_size=0, max_size=4096))
def test_archive_round_trip(layer: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = _archive(Path(tmp), layer)
        image = read_docker_archive(out, Path(tmp) / "blobs")
        assert image.layers == (sha256_bytes(layer),)
        assert image.repo_tags == ("a:b",) and image.config == b'{"architecture":"amd64"}'
        assert (
            Path(tmp) / "blobs" / sha256_bytes(layer).removeprefix("sha256:")
        ).read_bytes() == layer


def test_archive_with_a_tampered_layer_is_refused(tmp_path: Path) -> None:
    out = _archive(tmp_path, b"layer bytes")
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(out) as src, tarfile.open(tampered, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.endswith(".tar.gz"):
                data = b"other bytes"
                member.size = len(data)
            import io

            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(BuildError, match="digest mismatch"):
        read_docker_archive(tampered, tmp_path / "blobs")
    assert not any((tmp_path / "blobs").glob("[0-9a-f]*"))


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"\0" * 10)
    with pytest.raises(InvalidInput, match="docker-archive"):
        read_docker_archive(tmp_path / "x.tar", tmp_path / "blobs")
