"""The sample release pushed to a real registry (Debian's docker-registry), read back with skopeo."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Protocol

import pytest
import yaml

from imagefactory.errors import FactoryError
from imagefactory.oci.registry import RegistryTarget
from imagefactory.sample.debian import cache_dir
from imagefactory.sample.release import Release, ReleaseRequest, build_release
from imagefactory.sample.versions import parse_versions
from imagefactory.signing import keys
from imagefactory.signing.policy import SignatureError, Verifier

VERSION = "v1.11.5"


class RunningRegistry(Protocol):
    host: str


def real_cache() -> Path:
    # The integration conftest points $HOME at a temporary directory; reuse the real .deb cache.
    if os.environ.get("XDG_CACHE_HOME"):
        return cache_dir()
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache/imagefactory/debs"


def skopeo(*args: str) -> bytes:
    if shutil.which("skopeo") is None:
        pytest.skip("Debian skopeo is not installed")
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, timeout=120).stdout


@pytest.fixture(scope="module")
def pushed(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Release:
    request = ReleaseRequest(
        tmp_path_factory.mktemp("sample-push"),
        parse_versions(VERSION),
        push=registry.host,
        namespace="mirror",
    )
    return build_release(request, cache=real_cache())


def test_skopeo_inspects_the_pushed_imager(pushed: Release, registry: RunningRegistry) -> None:
    ref = f"docker://{registry.host}/mirror/siderolabs/imager:{VERSION}"
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", ref))
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(m["platform"]["architecture"] for m in raw["manifests"]) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        info = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", arch, ref))
        assert info["Architecture"] == arch
        assert info["Labels"] == {"alpha.talos.dev/version": VERSION}
        assert f"VERSION={VERSION}" in info["Env"]
        assert len(info["Layers"]) == 2
    digest = pushed.digests()[f"mirror/siderolabs/imager:{VERSION}"]
    assert json.loads(skopeo("inspect", "--tls-verify=false", ref))["Digest"] is not None
    tags = json.loads(
        skopeo(
            "list-tags", "--tls-verify=false", f"docker://{registry.host}/mirror/siderolabs/imager"
        )
    )["Tags"]
    assert VERSION in tags
    assert f"{digest.replace(':', '-')}.sig" in tags


def test_skopeo_copies_an_extension_and_reads_its_catalog_line(
    pushed: Release, registry: RunningRegistry, tmp_path: Path
) -> None:
    dest = tmp_path / "copy"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--override-arch",
        "arm64",
        f"docker://{registry.host}/mirror/siderolabs/extensions:{VERSION}",
        f"dir:{dest}",
    )
    manifest = json.loads((dest / "manifest.json").read_text())
    assert len(manifest["layers"]) == 1
    lines = [
        line
        for line in subprocess.run(
            [
                "tar",
                "-xzOf",
                str(dest / manifest["layers"][0]["digest"].split(":")[1]),
                "image-digests",
            ],
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .splitlines()
    ]
    # Lines name the registry the release was pushed to, without the mirror namespace.
    assert all(line.startswith(f"{registry.host}/siderolabs/") for line in lines)
    digests = pushed.digests()
    for line in lines:
        ref, _, digest = line.partition("@")
        repository, _, tag = ref.removeprefix(f"{registry.host}/").rpartition(":")
        assert digests[f"mirror/{repository}:{tag}"] == digest


def test_signatures_verify_in_the_registry(pushed: Release, registry: RunningRegistry) -> None:
    verifier = Verifier.with_public_key(keys.load_public_key(pushed.public_key))
    with RegistryTarget(registry.host, insecure=True) as target:
        for image in pushed.images:
            verifier.verify(
                target, image.repository, image.digest, f"{registry.host}/{image.repository}"
            )
        other = Verifier.with_public_key(keys.generate_key().public_key())
        image = pushed.images[0]
        with pytest.raises(SignatureError):
            other.verify(
                target, image.repository, image.digest, f"{registry.host}/{image.repository}"
            )


def test_config_names_the_registry(pushed: Release, registry: RunningRegistry) -> None:
    config = yaml.safe_load(pushed.config.read_text())
    assert config["sources"] == {
        "registry": registry.host,
        "namespace": "mirror",
        "insecure": True,
        "verify": {"publicKey": pushed.public_key.name},
    }
    # Relative to the config, so the whole directory can be copied elsewhere.
    assert (pushed.config.parent / config["sources"]["verify"]["publicKey"]) == pushed.public_key
    assert config["versions"]["list"] == [VERSION]


def test_push_to_a_closed_port_fails_cleanly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    request = ReleaseRequest(tmp_path, parse_versions(VERSION), push=f"127.0.0.1:{port}")
    with pytest.raises(FactoryError):
        build_release(request, cache=real_cache())
