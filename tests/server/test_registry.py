"""The /v2 frontend serving a published read-only `v2/` tree to real clients: skopeo pulls a
two-arch installer by tag; containerd's resolver rules (HEAD by tag answers Docker-Content-Digest,
`?ns=` tolerated, manifests by digest)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from serving import VANILLA, Served, post_schematic

pytestmark = pytest.mark.integration

SOURCE_TAG = "siderolabs/installer-base:v1.11.5"
INDEX = "application/vnd.oci.image.index.v1+json"


def publish_v2(layout: Path, public: Path, image: str, schematic_id: str, tag: str) -> str:
    """Lay the layout's installer index out as v2/<image>/<id>/{manifests,blobs}/…; its digest."""
    index = json.loads((layout / "index.json").read_text())
    top = next(
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == SOURCE_TAG
    )
    root = public / "v2" / image / schematic_id
    (root / "manifests").mkdir(parents=True)
    (root / "blobs").mkdir(parents=True)

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def place_manifest(digest: str) -> None:
        os.link(blob(digest), root / "manifests" / digest)
        document = json.loads(blob(digest).read_bytes())
        for child in document.get("manifests", []):
            place_manifest(child["digest"])
        for layer in [document.get("config"), *document.get("layers", [])]:
            if layer and not (root / "blobs" / layer["digest"]).exists():
                os.link(blob(layer["digest"]), root / "blobs" / layer["digest"])

    place_manifest(top["digest"])
    os.link(blob(top["digest"]), root / "manifests" / tag)
    digest: str = top["digest"]
    return digest


@pytest.fixture(scope="module")
def registry_server(
    server_factory: Callable[..., Served], sample_release: Path
) -> tuple[Served, str]:
    served = server_factory()
    post_schematic(served, "{}")
    generation = served.config.parent / "gen-1"
    digest = publish_v2(sample_release.parent / "oci", generation, "installer", VANILLA, "v1.11.5")
    (served.config.parent / "public").symlink_to("gen-1")
    return served, digest


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["skopeo", *args], capture_output=True, timeout=120, check=False)


def test_skopeo_copies_the_installer_by_tag(
    registry_server: tuple[Served, str], tmp_path: Path
) -> None:
    served, digest = registry_server
    host = served.url.removeprefix("http://")
    reference = f"docker://{host}/installer/{VANILLA}:v1.11.5"
    raw = skopeo("inspect", "--raw", "--tls-verify=false", reference)
    assert raw.returncode == 0, raw.stderr.decode()
    assert "sha256:" + hashlib.sha256(raw.stdout).hexdigest() == digest
    copied = skopeo("copy", "--all", "--src-tls-verify=false", reference, f"dir:{tmp_path / 'out'}")
    assert copied.returncode == 0, copied.stderr.decode()
    assert (tmp_path / "out" / "manifest.json").read_bytes() == raw.stdout
    platforms = {m["platform"]["architecture"] for m in json.loads(raw.stdout)["manifests"]}
    assert platforms == {"amd64", "arm64"}


def test_containerd_resolver_rules(registry_server: tuple[Served, str]) -> None:
    served, digest = registry_server
    base = f"{served.url}/v2/installer/{VANILLA}/manifests"
    assert requests.get(served.url + "/v2/", timeout=10).status_code == 200
    head = requests.head(
        f"{base}/v1.11.5?ns=factory.example", headers={"Accept": INDEX}, timeout=10
    )
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.headers["Content-Type"] == INDEX
    by_digest = requests.get(f"{base}/{digest}", timeout=10)
    assert "sha256:" + hashlib.sha256(by_digest.content).hexdigest() == digest
    latest = requests.get(f"{base}/latest", timeout=10)
    assert latest.content == by_digest.content
    missing = requests.get(f"{base}/v1.8.0", timeout=10)  # not a version of the lock
    assert missing.status_code == 404
    assert requests.get(f"{base}/-bad", timeout=10).status_code == 400


def test_unpublished_installer_is_built_into_the_stores_v2_tree(
    registry_server: tuple[Served, str], tmp_path: Path
) -> None:
    served, _ = registry_server
    host = served.url.removeprefix("http://")
    reference = f"docker://{host}/installer/{VANILLA}:v1.7.7"
    copied = skopeo("copy", "--all", "--src-tls-verify=false", reference, f"dir:{tmp_path / 'out'}")
    assert copied.returncode == 0, copied.stderr.decode()
    index = (tmp_path / "out" / "manifest.json").read_bytes()
    assert {m["platform"]["architecture"] for m in json.loads(index)["manifests"]} == {
        "amd64",
        "arm64",
    }
    built = served.store / "ondemand" / "v2" / "installer" / VANILLA / "manifests" / "v1.7.7"
    assert built.read_bytes() == index
    assert not (
        served.config.parent / "gen-1" / "v2" / "installer" / VANILLA / "manifests" / "v1.7.7"
    ).exists()
