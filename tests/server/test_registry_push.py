"""The /v2 frontend with a registry configured: a pull by tag builds the two-arch installer in a
worker, pushes and signs it, and answers 307 to the registry by digest; skopeo follows it. An
unsigned image already under the tag is rebuilt, never served."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from integration.conftest import RunningRegistry, start_registry, stop_registry
from serving import VANILLA, Served, post_schematic

from imagefactory.signing.keys import generate_key, save_private_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    proc, registry = start_registry(tmp_path_factory.mktemp("push-registry"))
    try:
        yield registry
    finally:
        stop_registry(proc)


@pytest.fixture(scope="module")
def frontend(
    server_factory: Callable[..., Served],
    docker_registry: RunningRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Served:
    key = tmp_path_factory.mktemp("key") / "signing.key"
    save_private_key(generate_key(), key)
    served = server_factory(
        config={
            "registry": {
                "url": f"{docker_registry.host}/factory",
                "insecure": True,
                "signing": {"keyPath": str(key)},
            }
        }
    )
    post_schematic(served, "{}")
    return served


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["skopeo", *args], capture_output=True, timeout=600, check=False)


def test_pull_by_tag_builds_pushes_signs_and_redirects(
    frontend: Served, docker_registry: RunningRegistry, tmp_path: Path
) -> None:
    host = frontend.url.removeprefix("http://")
    reference = f"docker://{host}/installer/{VANILLA}:v1.11.5"
    copied = skopeo("copy", "--all", "--src-tls-verify=false", reference, f"dir:{tmp_path / 'out'}")
    assert copied.returncode == 0, copied.stderr.decode()
    index = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}

    # containerd: HEAD by tag -> 307 to the registry by digest, which answers the digest.
    head = requests.head(
        f"{frontend.url}/v2/installer/{VANILLA}/manifests/v1.11.5?ns={host}",
        allow_redirects=False,
        timeout=60,
    )
    assert head.status_code == 307
    location = head.headers["Location"]
    prefix = f"{docker_registry.url}/v2/factory/installer/{VANILLA}/manifests/sha256:"
    assert location.startswith(prefix)
    digest = location.rsplit("/", 1)[1]
    at_registry = requests.head(
        location, headers={"Accept": "application/vnd.oci.image.index.v1+json"}, timeout=10
    )
    assert at_registry.headers["Docker-Content-Digest"] == digest
    # Signed (cosign's tag scheme), and tagged.
    tags = requests.get(
        f"{docker_registry.url}/v2/factory/installer/{VANILLA}/tags/list", timeout=10
    )
    names = tags.json()["tags"]
    assert "v1.11.5" in names and f"sha256-{digest.removeprefix('sha256:')}.sig" in names
    # Blobs and digests go straight to the registry.
    blob = requests.get(
        f"{frontend.url}/v2/installer/{VANILLA}/blobs/{digest}", allow_redirects=False, timeout=10
    )
    assert blob.status_code == 307
    assert blob.headers["Location"].endswith(f"/factory/installer/{VANILLA}/blobs/{digest}")


def test_unsigned_image_under_the_tag_is_rebuilt(
    frontend: Served, docker_registry: RunningRegistry, sample_release: Path
) -> None:
    intruder = f"docker://{docker_registry.host}/factory/installer/{VANILLA}:v1.7.7"
    layout = sample_release.parent / "oci"
    pushed = skopeo(
        "copy", "--all", "--dest-tls-verify=false",
        f"oci:{layout}:siderolabs/installer:v1.7.7", intruder,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr.decode()
    unsigned = skopeo("inspect", "--raw", "--tls-verify=false", intruder).stdout
    answer = requests.get(
        f"{frontend.url}/v2/installer/{VANILLA}/manifests/v1.7.7",
        allow_redirects=False,
        timeout=600,
    )
    assert answer.status_code == 307, answer.text
    rebuilt = requests.get(
        answer.headers["Location"],
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        timeout=10,
    ).content
    assert rebuilt != unsigned
    assert json.loads(rebuilt)["mediaType"] == "application/vnd.oci.image.index.v1+json"
