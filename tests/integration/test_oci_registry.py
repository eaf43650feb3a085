"""Our registry client against Debian's docker-registry, cross-checked with skopeo."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from imagefactory.errors import BuildError, NotFound
from imagefactory.oci import media
from imagefactory.oci.build import push_image
from imagefactory.oci.copy import copy_image
from imagefactory.oci.layout import LayoutTarget, open_target
from imagefactory.oci.model import Descriptor, canonical_json
from imagefactory.oci.pull import pull_image, unpack_image
from imagefactory.oci.registry import RegistryTarget
from imagefactory.store import Store

MTIME = 1_700_000_000


class RunningRegistry(Protocol):
    """What the `registry` fixtures of conftest.py yield."""

    host: str
    url: str
    root: Path
    user: str | None
    password: str | None

    def blob_data(self, digest: str) -> Path: ...


def make_tree(root: Path, arch: str) -> Path:
    (root / "usr/install" / arch).mkdir(parents=True)
    (root / "usr/install" / arch / "vmlinuz").write_bytes(f"kernel for {arch}\n".encode() * 1000)
    (root / "usr/install" / arch / "initramfs.xz").write_bytes(bytes(range(256)) * 64)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\necho hi\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/alias").symlink_to("tool")
    return root


@pytest.fixture
def target(registry: RunningRegistry) -> Iterator[RegistryTarget]:
    with RegistryTarget(registry.host, insecure=True, retries=3, backoff=0.01) as t:
        yield t


@pytest.fixture
def trees(tmp_path: Path) -> dict[str, list[Path]]:
    return {
        "amd64": [make_tree(tmp_path / "amd64", "amd64")],
        "arm64": [make_tree(tmp_path / "arm64", "arm64")],
    }


def skopeo(*args: str) -> bytes:
    if shutil.which("skopeo") is None:
        pytest.skip("Debian skopeo is not installed")
    return subprocess.run(["skopeo", *args], check=True, capture_output=True).stdout


def test_push_and_pull_single_image(target: RegistryTarget, trees: dict[str, list[Path]]) -> None:
    top = push_image(target, "test/single", "v1", {"amd64": trees["amd64"]}, mtime=MTIME)
    assert top.media_type == media.OCI_MANIFEST
    for ref in ("v1", top.digest):
        image = pull_image(target, "test/single", ref)
        assert image.descriptor.digest == top.digest
        assert image.config["created"] == "2023-11-14T22:13:20Z"
        assert image.config["architecture"] == "amd64"
        assert len(image.layers) == 1
    with pytest.raises(NotFound, match=r"test/single:v1: is a linux/amd64 image, not linux/arm64"):
        pull_image(target, "test/single", "v1", arch="arm64")


def test_index_round_trip_and_skopeo(
    target: RegistryTarget, registry: RunningRegistry, trees: dict[str, list[Path]], tmp_path: Path
) -> None:
    top = push_image(target, "test/multi", "v1.9.0", trees, mtime=MTIME)
    again = push_image(target, "test/multi", "v1.9.0", trees, mtime=MTIME)
    assert top == again
    assert top.media_type == media.OCI_INDEX
    assert target.resolve("test/multi", "v1.9.0") == top

    for arch in ("amd64", "arm64"):
        for ref in ("v1.9.0", top.digest):
            image = pull_image(target, "test/multi", ref, arch=arch)
            assert image.index is not None and image.index.digest == top.digest
            assert image.config["architecture"] == arch
            out = tmp_path / f"root-{arch}-{ref[:6]}"
            unpack_image(target, image, out, Store(tmp_path / "store"))
            kernel = out / "usr/install" / arch / "vmlinuz"
            assert kernel.read_bytes() == f"kernel for {arch}\n".encode() * 1000
            assert (out / "usr/bin/tool").stat().st_mode & 0o777 == 0o755
            assert (out / "usr/bin/alias").readlink() == Path("tool")
    with pytest.raises(NotFound, match=r"test/multi:v1.9.0: no linux/riscv64 image"):
        pull_image(target, "test/multi", "v1.9.0", arch="riscv64")

    # skopeo, a real client, sees our exact bytes and copies every image in the index.
    raw = skopeo(
        "inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/test/multi:v1.9.0"
    )
    _, ours = target.get_manifest("test/multi", top.digest)
    assert raw == ours
    layout = tmp_path / "skopeo-layout"
    skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        f"docker://{registry.host}/test/multi:v1.9.0",
        f"oci:{layout}:v1.9.0",
    )
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == top.digest
    children = json.loads(ours)["manifests"]
    for child in children:
        assert (layout / "blobs/sha256" / child["digest"].removeprefix("sha256:")).is_file()
        raw_child = skopeo(
            "inspect",
            "--tls-verify=false",
            "--raw",
            f"docker://{registry.host}/test/multi@{child['digest']}",
        )
        assert raw_child == target.get_manifest("test/multi", child["digest"])[1]


def test_tampered_blob_is_refused(
    target: RegistryTarget, registry: RunningRegistry, trees: dict[str, list[Path]], tmp_path: Path
) -> None:
    push_image(target, "test/tamper-blob", "v1", {"amd64": trees["amd64"]}, mtime=MTIME + 1)
    image = pull_image(target, "test/tamper-blob", "v1")
    layer = image.layers[0]
    data = registry.blob_data(layer.digest)
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))
    dest = tmp_path / "out" / "blob"
    with pytest.raises(BuildError, match=rf"test/tamper-blob@{layer.digest}: digest mismatch"):
        target.fetch_blob("test/tamper-blob", layer.digest, dest)
    assert list(dest.parent.iterdir()) == []  # neither the blob nor a temporary file
    with (
        pytest.raises(BuildError, match="digest mismatch"),
        target.open_blob("test/tamper-blob", layer.digest) as f,
    ):
        f.read()
    with pytest.raises(BuildError, match=rf"test/tamper-blob@{layer.digest}: digest mismatch"):
        unpack_image(target, image, tmp_path / "root")
    assert not (tmp_path / "root/usr").exists()  # verified before anything is extracted


def test_tampered_manifest_is_refused(
    target: RegistryTarget, registry: RunningRegistry, trees: dict[str, list[Path]]
) -> None:
    top = push_image(target, "test/tamper-man", "v1", {"amd64": trees["amd64"]}, mtime=MTIME + 2)
    data = registry.blob_data(top.digest)
    # Still valid JSON, so the registry serves it; only the digest can tell.
    data.write_bytes(data.read_bytes() + b" ")
    pattern = "test/tamper-man{}: manifest digest mismatch"
    with pytest.raises(BuildError, match=pattern.format(":v1")):
        target.get_manifest("test/tamper-man", "v1")
    with pytest.raises(BuildError, match=pattern.format("@" + top.digest)):
        pull_image(target, "test/tamper-man", top.digest)


def test_blob_push_chunked_dedup_mount_and_delete(target: RegistryTarget, tmp_path: Path) -> None:
    target.chunk_size = 1000
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 40)  # 10 chunks and a bit
    digest = target.push_blob("test/blobs", blob)
    assert target.has_blob("test/blobs", digest)
    assert target.push_blob("test/blobs", blob, digest) == digest
    back = tmp_path / "back.bin"
    target.fetch_blob("test/blobs", digest, back)
    assert back.read_bytes() == blob.read_bytes()
    with pytest.raises(BuildError, match="hashes to"):
        target.push_blob("test/blobs2", blob, "sha256:" + "1" * 64)
    assert target.mount_blob("test/mounted", digest, "test/blobs")
    assert target.has_blob("test/mounted", digest)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert target.push_blob("test/blobs", empty) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )

    config = target.push_blob_bytes("test/blobs", b"{}")
    man = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": Descriptor(media.OCI_CONFIG, config, 2).to_json(),
            "layers": [],
        }
    )
    desc = target.put_manifest("test/blobs", man, media.OCI_MANIFEST, tag="gone")
    assert target.get_manifest("test/blobs", "gone")[1] == man
    target.delete_manifest("test/blobs", desc.digest)
    with pytest.raises(NotFound, match="test/blobs:gone: not found"):
        target.resolve("test/blobs", "gone")


def test_list_tags(target: RegistryTarget) -> None:
    """distribution 2.8 ignores ?n= (no Link pages); tests/test_oci_http.py covers pagination."""
    config = target.push_blob_bytes("test/tags", b"{}")
    man = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": Descriptor(media.OCI_CONFIG, config, 2).to_json(),
            "layers": [],
        }
    )
    names = [f"t{i}" for i in range(7)]
    for name in names:
        target.put_manifest("test/tags", man, media.OCI_MANIFEST, tag=name)
    assert sorted(target.list_tags("test/tags")) == names
    with pytest.raises(NotFound, match="test/nothing-here"):
        target.list_tags("test/nothing-here")


def test_down_registry_fails_after_bounded_attempts() -> None:
    """A port that accepts and drops every connection: count the attempts, not the time."""
    accepted = 0
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]

    def serve() -> None:
        nonlocal accepted
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        target = RegistryTarget(f"127.0.0.1:{port}", insecure=True, retries=4, backoff=0.01)
        with pytest.raises(BuildError) as err:
            pull_image(target, "siderolabs/imager", "v1.9.0")
        assert str(err.value).startswith(
            f"registry 127.0.0.1:{port}: cannot reach it after 4 attempts (siderolabs/imager:v1.9.0)"
        )
        assert accepted == 4
    finally:
        server.close()
        thread.join(5)


def test_refused_connection_message() -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()  # nothing listens there now
    target = RegistryTarget(f"127.0.0.1:{number}", insecure=True, retries=3, backoff=0.01)
    with pytest.raises(BuildError) as err:
        target.resolve("siderolabs/imager", "v1.9.0")
    assert str(err.value) == (
        f"registry 127.0.0.1:{number}: cannot reach it after 3 attempts"
        " (siderolabs/imager:v1.9.0): connection refused"
    )
    assert target.attempts == 3


def test_basic_auth(auth_registry: RunningRegistry, trees: dict[str, list[Path]]) -> None:
    good = RegistryTarget(
        auth_registry.host,
        insecure=True,
        username=auth_registry.user,
        password=auth_registry.password,
    )
    top = push_image(good, "test/auth", "v1", {"amd64": trees["amd64"]}, mtime=MTIME)
    assert pull_image(good, "test/auth", "v1").descriptor.digest == top.digest
    raw = skopeo(
        "inspect",
        "--tls-verify=false",
        "--raw",
        f"--creds={auth_registry.user}:{auth_registry.password}",
        f"docker://{auth_registry.host}/test/auth:v1",
    )
    assert raw == good.get_manifest("test/auth", "v1")[1]

    wrong = RegistryTarget(
        auth_registry.host, insecure=True, username="factory", password="wrong", retries=2
    )
    with pytest.raises(BuildError) as err:
        wrong.resolve("test/auth", "v1")
    assert str(err.value).startswith(
        f"registry {auth_registry.host}: authentication failed for user 'factory' (test/auth:v1)"
    )
    anonymous = RegistryTarget(auth_registry.host, insecure=True)
    with pytest.raises(BuildError, match=r"\(test/auth:v1\): needs a username and password"):
        anonymous.resolve("test/auth", "v1")


def test_layout_registry_layout_keeps_digests(
    target: RegistryTarget, trees: dict[str, list[Path]], tmp_path: Path
) -> None:
    src = LayoutTarget(tmp_path / "src")
    top = push_image(src, "test/roundtrip", "v2", trees, mtime=MTIME)
    copy_image(src, target, "test/roundtrip", "v2")
    assert target.resolve("test/roundtrip", "v2") == top
    dst = open_target(f"oci-layout:{tmp_path / 'dst'}")
    copy_image(target, dst, "test/roundtrip", "v2")
    assert dst.resolve("test/roundtrip", "v2").digest == top.digest
    for arch in ("amd64", "arm64"):
        a = pull_image(src, "test/roundtrip", "v2", arch=arch)
        b = pull_image(dst, "test/roundtrip", "v2", arch=arch)
        assert a.descriptor == b.descriptor and a.layers == b.layers
    assert sorted(p.name for p in (tmp_path / "src/blobs/sha256").iterdir()) == sorted(
        p.name for p in (tmp_path / "dst/blobs/sha256").iterdir()
    )
