"""The OCI layout directory target: tags, manifests, verified blobs, deletes and tampering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagefactory.errors import BuildError, InvalidInput, NotFound
from imagefactory.oci import media
from imagefactory.oci.digest import sha256_bytes
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor, canonical_json
from imagefactory.store import Store


def manifest(target: LayoutTarget, repo: str, content: bytes) -> bytes:
    layer = target.push_blob_bytes(repo, content)
    config = target.push_blob_bytes(repo, b"{}")
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": Descriptor(media.OCI_CONFIG, config, 2).to_json(),
            "layers": [Descriptor(media.OCI_LAYER_TAR, layer, len(content)).to_json()],
        }
    )


def test_layout_files_and_tags(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "l")
    data = manifest(target, "a/b", b"payload")
    desc = target.put_manifest("a/b", data, media.OCI_MANIFEST, tag="v1")
    target.put_manifest("c/d", data, media.OCI_MANIFEST, tag="v1")
    assert json.loads((tmp_path / "l/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "l/index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names == ["a/b:v1", "c/d:v1"]
    assert target.resolve("a/b", "v1") == desc
    assert target.resolve("a/b", desc.digest) == desc
    assert target.get_manifest("a/b", "v1") == (desc, data)
    assert target.list_tags("a/b") == ["v1"]
    # Re-tagging moves the tag.
    other = manifest(target, "a/b", b"other")
    moved = target.put_manifest("a/b", other, media.OCI_MANIFEST, tag="v1")
    assert target.resolve("a/b", "v1") == moved
    assert target.list_tags("a/b") == ["v1"]
    with pytest.raises(NotFound, match=r"oci-layout:.*/a/b:v2: no such tag"):
        target.resolve("a/b", "v2")
    with pytest.raises(NotFound, match="no such repository"):
        target.list_tags("x/y")


def test_blobs_are_verified(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "l")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)
    digest = target.push_blob("a/b", src)
    assert digest == sha256_bytes(b"x" * 5000)
    assert target.has_blob("a/b", digest)
    with pytest.raises(BuildError, match="digest mismatch"):
        target.push_blob("a/b", src, "sha256:" + "2" * 64)
    assert not target.has_blob("a/b", "sha256:" + "2" * 64)
    target.blob_path(digest).write_bytes(b"y" * 5000)  # tamper
    with pytest.raises(BuildError, match=rf"/a/b@{digest}: digest mismatch"):
        target.fetch_blob("a/b", digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(BuildError, match="digest mismatch"), target.open_blob("a/b", digest) as f:
        f.read()
    with pytest.raises(NotFound, match="no such blob"):
        target.open_blob("a/b", "sha256:" + "3" * 64)
    with pytest.raises(InvalidInput, match="not a sha256 digest"):
        target.has_blob("a/b", "sha256:XYZ")


def test_blob_read_in_part_is_still_verified_when_closed(tmp_path: Path) -> None:
    """A reader that stops early (tarfile at the end-of-archive blocks) still gets the check."""
    target = LayoutTarget(tmp_path / "l")
    good = b"head" + b"x" * (3 << 20)
    digest = target.push_blob_bytes("a/b", good)
    with target.open_blob("a/b", digest) as f:
        assert f.read(4) == b"head"  # the untouched blob: closing early is fine
    target.blob_path(digest).write_bytes(good + b"appended")
    with (
        pytest.raises(BuildError, match=rf"/a/b@{digest}: digest mismatch"),
        target.open_blob("a/b", digest) as f,
    ):
        assert f.read(4) == b"head"
    f = target.open_blob("a/b", digest)
    f.read(4)
    with pytest.raises(BuildError, match="digest mismatch"):
        f.close()
    assert f.closed


def test_tampered_manifest_and_delete(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "l")
    data = manifest(target, "a/b", b"p")
    desc = target.put_manifest("a/b", data, media.OCI_MANIFEST, tag="v1")
    target.blob_path(desc.digest).write_bytes(data + b" ")
    with pytest.raises(BuildError, match="a/b:v1: manifest digest mismatch"):
        target.get_manifest("a/b", "v1")
    target.blob_path(desc.digest).write_bytes(data)
    target.delete_manifest("a/b", desc.digest)
    with pytest.raises(NotFound):
        target.resolve("a/b", "v1")
    with pytest.raises(NotFound):
        target.resolve("a/b", desc.digest)
    with pytest.raises(NotFound):
        target.delete_manifest("a/b", desc.digest)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.put_manifest("a/b", b"not json", media.OCI_MANIFEST), "not JSON"),
        (lambda t: t.put_manifest("a/b", b"{}", media.OCI_MANIFEST, tag="bad tag"), "not a tag"),
        (lambda t: t.resolve("A/B", "v1"), "not a repository"),
        (lambda t: t.resolve("a/b", "sha256:zz"), "not a tag or sha256 digest"),
    ],
)
def test_bad_input(tmp_path: Path, call: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call(LayoutTarget(tmp_path / "l"))  # type: ignore[operator]


def test_store(tmp_path: Path) -> None:
    layout = LayoutTarget(tmp_path / "l")
    digest = layout.push_blob_bytes("a/b", b"blob")
    store = Store(tmp_path / "store")
    assert not store.has(digest)
    path = store.fetch(layout, "a/b", digest)
    assert path == store.path(digest) and path.read_bytes() == b"blob"
    layout.blob_path(digest).unlink()
    assert store.fetch(layout, "a/b", digest) == path  # present: no fetch
    assert store.add_bytes(b"more") == sha256_bytes(b"more")
    src = tmp_path / "f"
    src.write_bytes(b"file")
    assert store.path(store.add_file(src)).read_bytes() == b"file"
    with pytest.raises(InvalidInput, match="not a file"):
        store.add_file(tmp_path / "missing")
    assert [p.name for p in store.blobs.iterdir() if p.name.startswith(".")] == []
