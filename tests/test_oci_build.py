"""Deterministic layers and images, and the OCI model's parsers and encoders."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.errors import InvalidInput
from imagefactory.oci import media
from imagefactory.oci.build import LayerFile, push_image, write_layer, write_layer_entries
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor, Platform, Reference, canonical_json

MTIME = 1_700_000_000


def tree(root: Path) -> Path:
    (root / "b/c").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "b/c/data.bin").write_bytes(bytes(range(256)) * 100)
    (root / "b/run").write_text("#!/bin/sh\n")
    (root / "b/run").chmod(0o750)
    (root / "b/link").symlink_to("c/data.bin")
    return root


def test_layer_is_deterministic_and_normalised(tmp_path: Path) -> None:
    src = tree(tmp_path / "t1")
    desc1, diff1 = write_layer(src, tmp_path / "l1.tar.gz", mtime=MTIME)
    # Same content written at another time, in another order, with other ownership/mtimes.
    other = tmp_path / "t2"
    (other / "b/c").mkdir(parents=True)
    (other / "b/link").symlink_to("c/data.bin")
    (other / "b/run").write_text("#!/bin/sh\n")
    (other / "b/run").chmod(0o750)
    (other / "b/c/data.bin").write_bytes(bytes(range(256)) * 100)
    (other / "a.txt").write_text("alpha\n")
    desc2, diff2 = write_layer(other, tmp_path / "l2.tar.gz", mtime=MTIME)
    assert (desc1, diff1) == (desc2, diff2)
    raw = (tmp_path / "l1.tar.gz").read_bytes()
    assert desc1.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert desc1.size == len(raw) and desc1.media_type == media.OCI_LAYER_GZIP
    assert raw[3] == 0  # gzip FLG: no FNAME, no extras
    assert raw[4:8] == b"\0\0\0\0"  # gzip MTIME 0
    plain = gzip.decompress(raw)
    assert diff1 == "sha256:" + hashlib.sha256(plain).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a.txt", "b", "b/c", "b/c/data.bin", "b/link", "b/run"]
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", MTIME)
    modes = {m.name: m.mode for m in members}
    assert modes["b/run"] == 0o750
    assert next(m for m in members if m.name == "b/link").linkname == "c/data.bin"

    desc3, _ = write_layer(src, tmp_path / "l3.tar.gz", mtime=MTIME + 1)
    assert desc3.digest != desc1.digest
    desc4, diff4 = write_layer(src, tmp_path / "l4.tar", compress=False, mtime=MTIME)
    assert desc4.media_type == media.OCI_LAYER_TAR and desc4.digest == diff4 == diff1


def test_layer_from_entries(tmp_path: Path) -> None:
    entries = [
        LayerFile("etc", 0o755, "dir"),
        LayerFile("etc/motd", 0o644, data=b"hello\n"),
        LayerFile("bin/sh", 0o777, "symlink", target="busybox"),
    ]
    desc, _ = write_layer_entries(entries, tmp_path / "l.tar.gz", mtime=MTIME)
    again, _ = write_layer_entries(entries[::-1], tmp_path / "m.tar.gz", mtime=MTIME)
    assert desc == again
    with tarfile.open(tmp_path / "l.tar.gz") as tar:
        assert tar.getnames() == ["bin/sh", "etc", "etc/motd"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "/abs", "mode": 0o644, "data": b""}, "relative"),
        ({"path": "a/../b", "mode": 0o644, "data": b""}, "relative"),
        ({"path": "a", "mode": 0o10000, "data": b""}, "out of range"),
        ({"path": "a", "mode": 0o644}, "exactly one of data and source"),
        ({"path": "a", "mode": 0o777, "kind": "symlink"}, "needs a target"),
    ],
)
def test_bad_layer_entries(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        LayerFile(**kwargs)  # type: ignore[arg-type]


def test_write_layer_bad_tree(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a directory"):
        write_layer(tmp_path / "missing", tmp_path / "x")


def test_push_image_twice_same_digests(tmp_path: Path) -> None:
    src = tree(tmp_path / "tree")
    digests = []
    for name in ("one", "two"):
        target = LayoutTarget(tmp_path / name)
        top = push_image(
            target,
            "siderolabs/imager",
            "v1.9.0",
            {"amd64": [src], "arm64": [src]},
            config={"Labels": {"org.example": "x"}},
            annotations={"org.opencontainers.image.version": "v1.9.0"},
            mtime=MTIME,
        )
        digests.append(top.digest)
        index = json.loads(target.get_manifest("siderolabs/imager", "v1.9.0")[1])
        assert index["mediaType"] == media.OCI_INDEX
        assert [m["platform"] for m in index["manifests"]] == [
            {"architecture": "amd64", "os": "linux"},
            {"architecture": "arm64", "os": "linux"},
        ]
        assert index["annotations"] == {"org.opencontainers.image.version": "v1.9.0"}
        child = json.loads(
            target.get_manifest("siderolabs/imager", index["manifests"][1]["digest"])[1]
        )
        with target.open_blob("siderolabs/imager", child["config"]["digest"]) as f:
            config = json.loads(f.read())
        assert config["created"] == "2023-11-14T22:13:20Z"
        assert config["architecture"] == "arm64"
        assert config["config"] == {"Labels": {"org.example": "x"}}
    assert digests[0] == digests[1]
    assert sorted((tmp_path / "one/blobs/sha256").iterdir()) != []
    assert sorted(p.name for p in (tmp_path / "one/blobs/sha256").iterdir()) == sorted(
        p.name for p in (tmp_path / "two/blobs/sha256").iterdir()
    )


def test_push_image_bad_input(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "l")
    with pytest.raises(InvalidInput, match="at least one architecture"):
        push_image(target, "a/b", "v1", {})
    with pytest.raises(InvalidInput, match="not an architecture"):
        push_image(target, "a/b", "v1", {"AMD 64": []})
    with pytest.raises(InvalidInput, match="not a repository"):
        push_image(target, "A/B", "v1", {"amd64": []})


# -- model ---------------------------------------------------------------------------------

component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,5})?", fullmatch=True)
hosts = st.sampled_from(["ghcr.io", "127.0.0.1:5000", "localhost:5000", "registry.local"])
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
digests = st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)


@given(hosts, st.lists(component, min_size=1, max_size=3), st.none() | tags, st.none() | digests)
def test_reference_round_trip(host: str, parts: list[str], tag: str | None, dg: str | None) -> None:
    ref = Reference(host, "/".join(parts), tag, dg)
    assert Reference.parse(str(ref)) == ref


def test_reference_docker_defaults() -> None:
    assert Reference.parse("busybox") == Reference("docker.io", "library/busybox")
    assert Reference.parse("siderolabs/imager:v1.9.0").registry == "docker.io"
    ref = Reference.parse("127.0.0.1:5000/siderolabs/imager:v1.9.0")
    assert (ref.registry, ref.repository, ref.tag, ref.reference) == (
        "127.0.0.1:5000",
        "siderolabs/imager",
        "v1.9.0",
        "v1.9.0",
    )


@pytest.mark.parametrize(
    "text",
    ["", " ghcr.io/a", "ghcr.io/A/b", "ghcr.io/a:", "ghcr.io/a@sha256:12", "ghcr.io/a:-x", "a//b"],
)
def test_reference_bad(text: str) -> None:
    with pytest.raises(InvalidInput, match="not an image reference"):
        Reference.parse(text)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
        max_leaves=20,
    )
)
def test_canonical_json_is_compact_and_round_trips(obj: object) -> None:
    data = canonical_json(obj)
    assert json.loads(data) == obj
    assert canonical_json(json.loads(data)) == data


@given(
    digests,
    st.integers(0, 2**40),
    st.none() | st.builds(Platform, st.just("linux"), st.sampled_from(["amd64", "arm64"])),
    st.none() | st.dictionaries(st.text(min_size=1), st.text(), max_size=3),
)
def test_descriptor_round_trip(
    digest: str, size: int, platform: Platform | None, annotations: dict[str, str] | None
) -> None:
    desc = Descriptor(media.OCI_MANIFEST, digest, size, platform, annotations)
    assert Descriptor.from_json(json.loads(canonical_json(desc.to_json()))) == desc


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"mediaType": 1, "digest": "sha256:" + "0" * 64, "size": 1},
        {"mediaType": "x", "digest": "md5:00", "size": 1},
        {"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": -1},
        {"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": True},
        {"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": 1, "platform": "linux"},
        {"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": 1, "annotations": {"a": 1}},
    ],
)
def test_descriptor_bad(obj: object) -> None:
    with pytest.raises(InvalidInput):
        Descriptor.from_json(obj)
