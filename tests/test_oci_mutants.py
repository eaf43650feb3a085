"""OCI details the mutation run showed unguarded: links inside the root, opaque directories after
entries of the same layer, link-target depth counting, modes and mtimes, exact refusal reasons."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagefactory.errors import BuildError, FactoryError, InvalidInput, NotFound
from imagefactory.oci import digest, media, model
from imagefactory.oci.build import push_image, push_manifest_json
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor
from imagefactory.oci.pull import pull_image, unpack_image
from imagefactory.oci.tarsafe import apply_layer


@dataclass(frozen=True)
class E:
    """One tar entry: a file (data), a directory, a symlink or hard link (target)."""

    name: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int = 0o644
    mtime: int = 1_000_000


def tar(*entries: E) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mode, info.mtime = entry.mode, entry.mtime
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif entry.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
            elif entry.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, entry.target
            else:
                info.size = len(entry.data)
            out.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    buf.seek(0)
    return buf


def apply(root: Path, *entries: E) -> None:
    root.mkdir(exist_ok=True)
    apply_layer(tar(*entries), root, "layer")


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---- links inside the root ------------------------------------------------------------------------


def test_entries_may_go_through_symlinks_that_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(
        root,
        E("sub", "dir", mode=0o755),
        E("lnk", "symlink", target="sub"),
        E("self", "symlink", target="."),
        E("lnk/a", data=b"via link"),
        E("self/b", data=b"via self"),
    )
    assert (root / "sub" / "a").read_bytes() == b"via link"
    assert (root / "b").read_bytes() == b"via self"


@pytest.mark.parametrize(
    "target", ["a/../b", "./a/.././b", "a//..//b", "a/b/../../c", "/../../abs", "/etc/x"]
)
def test_symlink_targets_that_stay_inside_are_kept(tmp_path: Path, target: str) -> None:
    apply(tmp_path / "root", E("l", "symlink", target=target))
    assert os.readlink(tmp_path / "root" / "l") == target


@pytest.mark.parametrize("target", ["a/../../b", "../x", "./../x", "a//../../b", "a/./../../b"])
def test_symlink_targets_that_climb_out_are_refused(tmp_path: Path, target: str) -> None:
    with pytest.raises(BuildError, match="leaves the root"):
        apply(tmp_path / "root", E("l", "symlink", target=target))


# ---- opaque directories spare what this layer created -----------------------------------------


@pytest.mark.parametrize("name", ["a//b", "a/./b", "./a/b"])
def test_opaque_spares_entries_of_the_same_layer_however_named(tmp_path: Path, name: str) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "old").write_bytes(b"lower layer")
    apply(root, E(name, data=b"new"), E("a/.wh..wh..opq"))
    assert files(root) == {"a", "a/b"}


def test_nested_opaque_spares_entries_of_the_same_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "old").write_bytes(b"lower layer")
    apply(root, E("a/b/c", data=b"new"), E("a/b/.wh..wh..opq"))
    assert files(root) == {"a", "a/b", "a/b/c"}


def test_root_opaque_spares_top_level_entries_of_the_same_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "old").write_bytes(b"lower layer")
    apply(root, E("a/b", data=b"new"), E("c", data=b"new"), E(".wh..wh..opq"))
    assert files(root) == {"a", "a/b", "c"}


# ---- modes and times ------------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
def test_implicit_directories_are_0755_and_files_keep_mode_and_mtime(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(root, E("x/y/f", data=b"data", mode=0o640, mtime=1_234_567))
    assert stat.S_IMODE((root / "x").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "x" / "y").stat().st_mode) == 0o755
    info = (root / "x" / "y" / "f").stat()
    assert (stat.S_IMODE(info.st_mode), info.st_mtime) == (0o640, 1_234_567)


def test_a_replaced_directory_does_not_stop_the_others_modes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    caplog.set_level(logging.DEBUG, logger="imagefactory.oci.tarsafe")
    apply(
        root,
        E("a", "dir", mode=0o711, mtime=5),
        E("b", "dir", mode=0o700),
        E(".wh.b"),
        E("b", data=b"now a file"),
    )
    info = (root / "a").stat()
    assert (stat.S_IMODE(info.st_mode), info.st_mtime) == (0o711, 5)
    assert "layer: ('b',) was replaced; its mode is not set" in caplog.messages


def test_a_directory_recreated_by_another_entry_does_not_stop_the_others(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(
        root,
        E("a", "dir", mode=0o711),
        E("b", "dir", mode=0o700),
        E(".wh.b"),
        E("z", data=b"likely takes the freed inode, so the new b gets another"),
        E("b/c", data=b"b is a new directory"),
    )
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o711


# ---- refusals name the entry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ((E("/abs"),), "layer: entry '/abs': absolute path"),
        ((E("a/../b"),), "layer: entry 'a/../b': path contains '..'"),
        ((E("f"), E("f/x")), "layer: entry 'f/x': 'f' is not a directory"),
        ((E("f"), E("h", "hardlink", target="f/x")), "layer: entry 'h': 'f' is not a directory"),
    ],
)
def test_refusals_name_the_entry_and_why(
    tmp_path: Path, entries: tuple[E, ...], message: str
) -> None:
    with pytest.raises(BuildError, match=f"^{re.escape(message)}$"):
        apply(tmp_path / "root", *entries)


def test_symlink_out_of_the_root_is_refused_by_name(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(outside)
    message = "layer: entry 'out/x': goes through symlink 'out' out of the root"
    with pytest.raises(BuildError, match=f"^{re.escape(message)}$"):
        apply(root, E("out/x"))
    assert list(outside.iterdir()) == []


# ---- digests and media types ----------------------------------------------------------------------


def test_sha256_file_hashes_and_counts_every_chunk(tmp_path: Path) -> None:
    data = os.urandom(digest.CHUNK * 2 + 17)
    (tmp_path / "blob").write_bytes(data)
    assert digest.sha256_file(tmp_path / "blob") == (
        "sha256:" + hashlib.sha256(data).hexdigest(),
        len(data),
    )


def test_hashing_writer_is_writable() -> None:
    writer = digest.HashingWriter(io.BytesIO())
    assert writer.writable()
    with io.BufferedWriter(writer) as buffered:
        buffered.write(b"abc")
    assert writer.digest == "sha256:" + hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(
    ("manifest", "media_type"),
    [
        ({"mediaType": "application/x-custom", "manifests": []}, "application/x-custom"),
        ({"mediaType": "", "manifests": []}, "application/vnd.oci.image.index.v1+json"),
        ({"manifests": []}, "application/vnd.oci.image.index.v1+json"),
        ({"config": {}, "layers": []}, "application/vnd.oci.image.manifest.v1+json"),
    ],
)
def test_manifest_media_type_from_field_or_shape(
    manifest: dict[str, object], media_type: str
) -> None:
    assert model.manifest_media_type(manifest, "m") == media_type


@pytest.mark.parametrize("manifest", [{}, {"config": {}}, {"layers": []}, {"mediaType": 2}])
def test_manifest_media_type_refuses_other_shapes(manifest: dict[str, object]) -> None:
    with pytest.raises(InvalidInput, match=r"^m: neither an image manifest nor an index$"):
        model.manifest_media_type(manifest, "m")


def test_platform_text() -> None:
    assert str(model.Platform("linux", "arm64", "v8")) == "linux/arm64/v8"
    assert str(model.Platform("linux", "amd64")) == "linux/amd64"


# ---- pulling: the platform an index offers, the config, where layers land -----------------------

REPO = "test/pull"


def _trees(tmp_path: Path, *arches: str) -> dict[str, list[Path]]:
    trees = {}
    for arch in arches:
        tree = tmp_path / f"tree-{arch}"
        tree.mkdir()
        (tree / "arch").write_text(arch)
        trees[arch] = [tree]
    return trees


def test_pull_follows_the_index_to_the_asked_architecture(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "layout")
    top = push_image(target, REPO, "v1", _trees(tmp_path, "amd64", "arm64"))
    for arch in ("arm64", "amd64"):
        image = pull_image(target, REPO, "v1", arch=arch)
        assert image.index == top and image.reference == f"{target.name}/{REPO}:v1"
        assert image.descriptor.platform == model.Platform("linux", arch)
        assert image.descriptor.media_type == media.OCI_MANIFEST
        assert image.config["architecture"] == arch
        assert image.manifest["layers"][0]["digest"] == image.layers[0].digest
        unpack_image(target, image, tmp_path / arch / "root")
        assert (tmp_path / arch / "root" / "arch").read_text() == arch


def test_pull_picks_linux_among_other_platforms(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "layout")
    amd64 = push_image(target, REPO, None, _trees(tmp_path, "amd64"))
    entry = {"mediaType": amd64.media_type, "digest": amd64.digest, "size": amd64.size}
    index = {
        "schemaVersion": 2,
        "mediaType": media.OCI_INDEX,
        "manifests": [
            entry,  # no platform: never chosen
            {**entry, "platform": {"os": "windows", "architecture": "amd64"}},
            {**entry, "platform": {"os": "linux", "architecture": "arm64"}},
            {**entry, "platform": {"os": "linux", "architecture": "amd64", "variant": "v3"}},
        ],
    }
    push_manifest_json(target, REPO, index, "multi")
    image = pull_image(target, REPO, "multi", arch="amd64")
    assert image.descriptor.platform == model.Platform("linux", "amd64", "v3")
    message = (
        f"{target.name}/{REPO}:multi: no linux/riscv64 image "
        "(has windows/amd64, linux/arm64, linux/amd64/v3)"
    )
    with pytest.raises(NotFound, match=f"^{re.escape(message)}$"):
        pull_image(target, REPO, "multi", arch="riscv64")
    push_manifest_json(target, REPO, {**index, "manifests": [entry]}, "bare")
    bare = f"{target.name}/{REPO}:bare: no linux/amd64 image (has no platforms)"
    with pytest.raises(NotFound, match=f"^{re.escape(bare)}$"):
        pull_image(target, REPO, "bare")


def test_single_image_of_another_architecture_is_not_found(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "layout")
    desc = push_image(target, REPO, "v1", _trees(tmp_path, "arm64"))
    message = f"{target.name}/{REPO}:v1: is a linux/arm64 image, not linux/amd64"
    with pytest.raises(NotFound, match=f"^{re.escape(message)}$"):
        pull_image(target, REPO, "v1")
    by_digest = pull_image(target, REPO, desc.digest, arch="arm64")
    assert by_digest.reference == f"{target.name}/{REPO}@{desc.digest}" and by_digest.index is None


def _manifest(target: LayoutTarget, config: bytes, size: int, layers: object) -> None:
    config_desc = Descriptor(media.OCI_CONFIG, target.push_blob_bytes(REPO, config), size)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": config_desc.to_json(),
        "layers": layers,
    }
    push_manifest_json(target, REPO, manifest, "v1")


@pytest.mark.parametrize(
    ("size", "layers", "message"),
    [
        (2, {}, "layers must be a list"),
        (2, [{"digest": "nope"}], "mediaType"),
        (3, [], "config is 2 bytes, manifest says 3"),
    ],
)
def test_pull_refusals_name_the_image(
    tmp_path: Path, size: int, layers: object, message: str
) -> None:
    target = LayoutTarget(tmp_path / "layout")
    _manifest(target, b"{}", size, layers)
    with pytest.raises(FactoryError) as info:
        pull_image(target, REPO, "v1")
    assert str(info.value).startswith(f"{target.name}/{REPO}:v1: ")
    assert message in str(info.value)


def test_config_that_is_no_object_names_the_config(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "layout")
    _manifest(target, b"[]", 2, [])
    message = f"{target.name}/{REPO}:v1: config: manifest is not a JSON object"
    with pytest.raises(InvalidInput, match=f"^{re.escape(message)}$"):
        pull_image(target, REPO, "v1")


def test_unpack_into_a_new_nested_or_an_existing_directory(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "layout")
    push_image(target, REPO, "v1", _trees(tmp_path, "amd64"))
    image = pull_image(target, REPO, "v1")
    for dest in (tmp_path / "a" / "b" / "root", tmp_path / "a" / "b" / "root"):
        unpack_image(target, image, dest)
        assert (dest / "arch").read_text() == "amd64"


def test_unpack_refusals_name_the_image(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "layout")
    push_image(target, REPO, "v1", _trees(tmp_path, "amd64"))
    image = pull_image(target, REPO, "v1")
    nameless = dataclasses.replace(image, repository="")
    message = f"{image.reference}: PulledImage has no repository to fetch layers from"
    with pytest.raises(InvalidInput, match=f"^{re.escape(message)}$"):
        unpack_image(target, nameless, tmp_path / "root")
    layer = dataclasses.replace(image.layers[0], media_type="application/x-other")
    other = dataclasses.replace(image, layers=(layer,))
    message = f"{image.reference}: layer {layer.digest}: media type application/x-other is not a layer tar"
    with pytest.raises(BuildError, match=f"^{re.escape(message)}$"):
        unpack_image(target, other, tmp_path / "root")
    broken = tmp_path / "broken"
    broken.mkdir()
    bad = target.push_blob_bytes(REPO, b"not a tar")
    not_tar = dataclasses.replace(
        image, layers=(Descriptor(media.OCI_LAYER_TAR, bad, len(b"not a tar")),)
    )
    with pytest.raises(
        BuildError, match=f"^{re.escape(image.reference)}: layer {bad}: not a valid"
    ):
        unpack_image(target, not_tar, broken)


# ---- descriptors and platforms read back what they wrote ----------------------------------------

D = "sha256:" + "a" * 64


def test_descriptor_and_platform_round_trip_every_field() -> None:
    desc = Descriptor(
        media.OCI_MANIFEST,
        D,
        7,
        model.Platform("windows", "arm64", "v8"),
        {"k": "v"},
        "application/x-artifact",
    )
    assert desc.to_json() == {
        "mediaType": media.OCI_MANIFEST,
        "digest": D,
        "size": 7,
        "artifactType": "application/x-artifact",
        "platform": {"architecture": "arm64", "os": "windows", "variant": "v8"},
        "annotations": {"k": "v"},
    }
    assert Descriptor.from_json(desc.to_json()) == desc


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "descriptor must be an object, not list"),
        ({"digest": D, "size": 1}, "descriptor needs string mediaType and digest: "),
        ({"mediaType": "m", "digest": D, "size": "1"}, "descriptor size must be an integer: "),
        ({"mediaType": "m", "digest": D, "size": True}, "descriptor size must be an integer: "),
        ({"mediaType": "m", "digest": D, "size": 1, "annotations": []}, "descriptor annotations"),
        ({"mediaType": "m", "digest": D, "size": 1, "artifactType": 1}, "descriptor artifactType"),
        ({"mediaType": "m", "digest": "sha256:ab", "size": 1}, "descriptor digest is not sha256"),
        ({"mediaType": "m", "digest": D, "size": -1}, "descriptor size must be a non-negative"),
        (
            {"mediaType": "m", "digest": D, "size": 1, "annotations": {"k": 1}},
            "annotation 'k' must",
        ),
        (
            {"mediaType": "m", "digest": D, "size": 1, "platform": []},
            "platform must be an object, not list",
        ),
        (
            {
                "mediaType": "m",
                "digest": D,
                "size": 1,
                "platform": {"os": "linux", "architecture": 1},
            },
            "platform needs string os and architecture: {'os': 'linux', 'architecture': 1}",
        ),
        (
            {"mediaType": "m", "digest": D, "size": 1, "platform": {"os": 1, "architecture": "a"}},
            "platform needs string os and architecture: ",
        ),
        (
            {
                "mediaType": "m",
                "digest": D,
                "size": 1,
                "platform": {"os": "linux", "architecture": "a", "variant": 1},
            },
            "platform needs string os and architecture: ",
        ),
    ],
)
def test_descriptor_refusals_say_what_is_wrong(obj: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Descriptor.from_json(obj)
    assert str(info.value).startswith(message)
    if isinstance(obj, dict) and message.endswith(": "):
        named = obj["platform"] if message.startswith("platform") else obj
        assert str(info.value) == f"{message}{named!r}"


def test_descriptor_size_must_not_be_a_bool() -> None:
    with pytest.raises(
        InvalidInput, match=r"^descriptor size must be a non-negative integer: True$"
    ):
        Descriptor(media.OCI_MANIFEST, D, True)


def test_manifest_size_bound_and_shape() -> None:
    body = b'{"a":"' + b"x" * (model.MAX_MANIFEST_BYTES - 8) + b'"}'
    assert len(body) == model.MAX_MANIFEST_BYTES and model.parse_manifest(body, "m")
    with pytest.raises(
        InvalidInput, match=rf"^m: manifest is larger than {model.MAX_MANIFEST_BYTES} bytes$"
    ):
        model.parse_manifest(body + b" ", "m")
    with pytest.raises(InvalidInput, match=r"^m: manifest is not a JSON object$"):
        model.parse_manifest(b"[]", "m")


def test_verifying_reader_closes_what_it_reads_and_reads_nothing_after_eof(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(b"abc")
    handle = (tmp_path / "blob").open("rb")
    raw = digest.VerifyingReader(handle.read, digest.sha256_bytes(b"abc"), "blob", handle.close)
    stream = digest.buffered(raw)
    assert stream.read() == b"abc"
    assert raw.readinto(bytearray(4)) == 0  # done: nothing more, and no second check
    stream.close()
    assert handle.closed


# ---- blobs enter under a temporary name beside their final place --------------------------------


def test_blob_is_written_under_an_incoming_name_in_its_directory(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "blobs"
    seen: list[list[str]] = []

    def chunks() -> Iterator[bytes]:
        yield b"first "
        seen.append([p.name for p in directory.iterdir()])
        yield b"second"

    got = digest.add_verified(chunks(), directory, None, "blob")
    assert got == digest.sha256_bytes(b"first second")
    assert len(seen[0]) == 1 and re.fullmatch(r"\.incoming\.[^/]+\.part", seen[0][0])
    final = directory / got.removeprefix("sha256:")
    assert [p.name for p in directory.iterdir()] == [final.name]
    assert stat.S_IMODE(final.stat().st_mode) == 0o644


def test_blob_digest_mismatch_names_it_and_leaves_nothing(tmp_path: Path) -> None:
    expected = "sha256:" + "0" * 64
    message = f"blob x: digest mismatch: expected {expected}, got {digest.sha256_bytes(b'data')}"
    with pytest.raises(BuildError, match=f"^{re.escape(message)}$"):
        digest.add_verified([b"data"], tmp_path, expected, "blob x")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_entry_replaces_a_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(root, E("d", data=b"file first"), E("d", "dir", mode=0o755), E("d/f", data=b"x"))
    assert (root / "d" / "f").read_bytes() == b"x"


def test_a_hard_link_to_a_symlink_is_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(root, E("f", data=b"x"), E("s", "symlink", target="f"), E("h", "hardlink", target="s"))
    assert (root / "h").is_symlink() and os.readlink(root / "h") == "f"


def test_canonical_json_is_compact_utf8_in_the_given_order() -> None:
    # These bytes are what manifests are pushed as, so they fix every manifest digest.
    assert model.canonical_json({"b": [1, 2], "a": "é"}) == '{"b":[1,2],"a":"é"}'.encode()
