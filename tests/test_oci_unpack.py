"""Unpacking layers: whiteouts, opaque directories, modes, and every way out of the root refused."""

from __future__ import annotations

import io
import os
import random
import re
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from imagefactory import tools
from imagefactory.errors import BuildError
from imagefactory.oci import media
from imagefactory.oci.build import image_config, push_image, push_manifest_json
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor, canonical_json
from imagefactory.oci.pull import PulledImage, pull_image, unpack_image
from imagefactory.oci.tarsafe import apply_layer
from imagefactory.store import Store

Entry = tuple[str, str, bytes | str]  # (name, kind, data or link target)


def layer(*entries: Entry, mode: int = 0o644) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode if kind != "dir" else 0o755
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
            elif kind == "chardev":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(info)
    buf.seek(0)
    return buf


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([("/etc/passwd", "file", b"x")], "absolute path"),
        ([("../outside", "file", b"x")], "path contains '..'"),
        ([("a/../../outside", "file", b"x")], "path contains '..'"),
        ([("evil", "symlink", "../etc/passwd")], "leaves the root"),
        ([("a/b/evil", "symlink", "../../../x")], "leaves the root"),
        ([("hard", "hardlink", "../../etc/passwd")], "leaves the root"),
        ([("hard", "hardlink", "/etc/passwd")], "hard link to absolute path"),
        ([("hard", "hardlink", "missing")], "hard link to missing"),
        ([("d", "dir", b""), ("hard", "hardlink", "d")], "hard link to directory"),
        ([("d/s", "symlink", "../outside"), ("h", "hardlink", "d/s")], "leaves the root from"),
        ([(".wh..", "file", b"")], "whiteout of '.'"),
        ([(".wh...", "file", b"")], "whiteout of '..'"),
        ([("d/.wh.", "file", b"")], "whiteout of ''"),
        ([("d/.wh...", "file", b"")], "whiteout of '..'"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "nested-dotdot",
        "symlink-escape",
        "deep-symlink-escape",
        "hardlink-escape",
        "hardlink-absolute",
        "hardlink-missing",
        "hardlink-dir",
        "hardlink-to-escaping-symlink",
        "whiteout-dot",
        "whiteout-dotdot",
        "whiteout-empty",
        "nested-whiteout-dotdot",
    ],
)
def test_refused(tmp_path: Path, entries: list[Entry], why: str) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d/keep").write_text("keep")
    (tmp_path / "sentinel").write_text("host file")
    with pytest.raises(BuildError, match=f"img: entry '.*': .*{re.escape(why)}"):
        apply_layer(layer(*entries), root, "img")
    assert not (tmp_path / "outside").exists()
    assert not (tmp_path / "etc").exists()
    # A whiteout never removes the directory it is in, the root, or what lies above it.
    assert (tmp_path / "sentinel").read_text() == "host file"
    assert (root / "d/keep").read_text() == "keep"


def test_symlink_in_lower_layer_cannot_be_followed_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    # An absolute symlink is kept (it points inside the image at run time) ...
    apply_layer(layer(("etc", "symlink", str(outside))), root, "img")
    assert (root / "etc").readlink() == outside
    # ... but a later entry is never written through it to the host.
    with pytest.raises(BuildError, match="goes through symlink 'etc' out of the root"):
        apply_layer(layer(("etc/passwd", "file", b"pwned")), root, "img")
    assert list(outside.iterdir()) == []
    # A file entry replaces a symlink instead of writing through it.
    apply_layer(layer(("etc", "file", b"plain")), root, "img")
    assert not (root / "etc").is_symlink() and list(outside.iterdir()) == []


def directory(name: str, mode: int) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 1_000_000
    return info, None


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def raw_layer(*members: tuple[tarfile.TarInfo, None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, _ in members:
            tar.addfile(info)
    buf.seek(0)
    return buf


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_directory_mode_is_not_applied_through_a_symlink_that_replaced_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    outside.chmod(0o700)
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(raw_layer(directory("x", 0o777), symlink("x", str(outside))), root, "img")
    assert (root / "x").readlink() == outside
    assert mode_of(outside) == 0o700
    assert outside.stat().st_mtime != 1_000_000


def test_directory_mode_is_not_applied_through_a_parent_that_became_a_symlink(
    tmp_path: Path,
) -> None:
    (tmp_path / "outside/b").mkdir(parents=True)
    (tmp_path / "outside/b").chmod(0o700)
    root = tmp_path / "root"
    root.mkdir()
    members = (
        directory("a", 0o755),
        directory("a/b", 0o777),
        symlink("a", str(tmp_path / "outside")),
    )
    apply_layer(raw_layer(*members), root, "img")
    assert mode_of(tmp_path / "outside/b") == 0o700


def test_directory_replaced_by_another_directory_takes_the_later_mode(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    members = (directory("d", 0o700), symlink("d", "elsewhere"), directory("d", 0o751))
    apply_layer(raw_layer(*members), root, "img")
    assert (root / "d").is_dir() and not (root / "d").is_symlink()
    assert mode_of(root / "d") == 0o751
    assert (root / "d").stat().st_mtime == 1_000_000


def test_whiteout_of_a_symlink_removes_only_the_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data").write_text("host")
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(layer(("link", "symlink", str(outside))), root, "img")
    apply_layer(layer((".wh.link", "file", b""), ("d/.wh.link", "file", b"")), root, "img")
    assert not os.path.lexists(root / "link")
    assert (outside / "data").read_text() == "host"


def test_kept_entries_and_whiteouts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(
        layer(
            ("bin", "dir", b""),
            ("bin/busybox", "file", b"BB"),
            ("bin/sh", "symlink", "busybox"),
            ("bin/ash", "hardlink", "bin/busybox"),
            ("bin/abs", "symlink", "/bin/busybox"),
            ("etc", "dir", b""),
            ("etc/old", "file", b"old"),
            ("etc/keep", "file", b"keep"),
            ("opt", "dir", b""),
            ("opt/a", "file", b"a"),
            ("opt/sub/b", "file", b"b"),
            ("dev/null", "chardev", b""),
            mode=0o750,
        ),
        root,
        "img",
    )
    assert (root / "bin/busybox").read_bytes() == b"BB"
    assert (root / "bin/busybox").stat().st_mode & 0o7777 == 0o750
    assert (root / "bin/sh").readlink() == Path("busybox")
    assert (root / "bin/abs").readlink() == Path("/bin/busybox")
    assert os.path.samefile(root / "bin/ash", root / "bin/busybox")
    assert not (root / "dev/null").exists()  # no device nodes

    apply_layer(
        layer(
            ("etc/.wh.old", "file", b""),
            ("opt/.wh..wh..opq", "file", b""),
            ("opt/new", "file", b"new"),
            ("bin/sh", "file", b"replaced"),
        ),
        root,
        "img",
    )
    assert not (root / "etc/old").exists()
    assert (root / "etc/keep").read_bytes() == b"keep"
    assert sorted(p.name for p in (root / "opt").iterdir()) == ["new"]
    assert (root / "bin/sh").read_bytes() == b"replaced"
    assert (root / "bin/busybox").read_bytes() == b"BB"


def test_opaque_keeps_entries_of_its_own_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d/lower").write_text("lower")
    apply_layer(layer(("d/upper", "file", b"up"), ("d/.wh..wh..opq", "file", b"")), root, "img")
    assert sorted(p.name for p in (root / "d").iterdir()) == ["upper"]


def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="img: not a valid layer tar"):
        apply_layer(io.BytesIO(b"\x00garbage" * 100), tmp_path, "img")


def test_unpack_image_layers_in_order(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/gone").write_text("gone")
    (lower / "etc/conf").write_text("v1")
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/.wh.gone").write_text("")
    (upper / "etc/conf").write_text("v2")
    target = LayoutTarget(tmp_path / "layout")
    push_image(target, "test/layers", "v1", {"amd64": [lower, upper]}, mtime=1)
    image = pull_image(target, "test/layers", "v1")
    store = Store(tmp_path / "store")
    unpack_image(target, image, tmp_path / "root", store)
    assert (tmp_path / "root/etc/conf").read_text() == "v2"
    assert not (tmp_path / "root/etc/gone").exists()
    assert all(store.has(lay.digest) for lay in image.layers)


def compressed_image(
    tmp_path: Path, layer_bytes: bytes, media_type: str
) -> tuple[LayoutTarget, PulledImage]:
    """A one-layer image whose layer is stored as given, declared as `media_type`."""
    target = LayoutTarget(tmp_path / "layout")
    digest = target.push_blob_bytes("test/layer", layer_bytes)
    config = canonical_json(image_config("amd64", [digest], None, 1))
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": Descriptor(
            media.OCI_CONFIG, target.push_blob_bytes("test/layer", config), len(config)
        ).to_json(),
        "layers": [Descriptor(media_type, digest, len(layer_bytes)).to_json()],
    }
    push_manifest_json(target, "test/layer", manifest, "v1")
    return target, pull_image(target, "test/layer", "v1")


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def gzip(data: bytes) -> bytes:
    return subprocess.run(["gzip", "-n", "-c"], input=data, capture_output=True, check=True).stdout


# (media type, compressor, the tool named when the layer is bad)
CODECS = [
    (media.OCI_LAYER_ZSTD, zstd, "zstd"),
    (media.OCI_LAYER_GZIP, gzip, "pigz"),
    (media.DOCKER_LAYER_GZIP, gzip, "pigz"),
]
CODEC_IDS = ["zstd", "oci-gzip", "docker-gzip"]


@pytest.mark.parametrize(("media_type", "compress", "tool"), CODECS, ids=CODEC_IDS)
def test_compressed_layer_is_unpacked(
    tmp_path: Path, media_type: str, compress: Callable[[bytes], bytes], tool: str
) -> None:
    big = random.Random(0).randbytes(3 << 20)  # more than one pipe buffer and one read chunk
    plain = layer(("etc/conf", "file", b"packed!"), ("usr/big", "file", big)).getvalue()
    target, image = compressed_image(tmp_path, compress(plain), media_type)
    with tools.recording() as ran:
        unpack_image(target, image, tmp_path / "root", Store(tmp_path / "store"))
    assert (tmp_path / "root/etc/conf").read_bytes() == b"packed!"
    assert (tmp_path / "root/usr/big").read_bytes() == big
    assert [Path(argv[0]).name for argv in ran.argvs] == [tool]


Codec = tuple[str, Callable[[bytes], bytes], str]


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda z: z[: len(z) // 2], "cannot decompress {tool} layer: .*{tool} exited with 1"),
        (lambda z: z[:-1] + bytes([z[-1] ^ 0xFF]), "cannot decompress {tool} layer"),
        (lambda z: b"not compressed at all" * 10, "cannot decompress {tool} layer"),
    ],
    ids=["truncated", "bad-checksum", "not-compressed"],
)
def test_bad_compressed_layer(
    tmp_path: Path, codec: Codec, mangle: Callable[[bytes], bytes], message: str
) -> None:
    media_type, compress, tool = codec
    plain = layer(("etc/conf", "file", random.Random(1).randbytes(200_000))).getvalue()
    target, image = compressed_image(tmp_path, mangle(compress(plain)), media_type)
    expected = message.format(tool=tool)
    with pytest.raises(BuildError, match=f"test/layer:v1: layer sha256:[0-9a-f]+: {expected}"):
        unpack_image(target, image, tmp_path / "root")


@pytest.mark.parametrize(("media_type", "compress", "tool"), CODECS, ids=CODEC_IDS)
def test_compressed_layer_that_is_not_a_tar(
    tmp_path: Path, media_type: str, compress: Callable[[bytes], bytes], tool: str
) -> None:
    target, image = compressed_image(tmp_path, compress(b"not a tar" * 1000), media_type)
    with pytest.raises(
        BuildError, match=r"test/layer:v1: layer sha256:[0-9a-f]+: not a valid layer tar"
    ):
        unpack_image(target, image, tmp_path / "root")


@pytest.mark.parametrize(
    "kind", ["relative-symlink", "file-through-symlink", "hardlink-via-symlink"]
)
def test_sibling_whose_name_starts_with_the_root_is_outside(tmp_path: Path, kind: str) -> None:
    # "rootfs-evil" starts with "rootfs": a prefix test without the separator would let it in.
    root = tmp_path / "rootfs"
    root.mkdir()
    sibling = tmp_path / "rootfs-evil"
    sibling.mkdir()
    (sibling / "f").write_text("host file")
    if kind == "relative-symlink":
        with pytest.raises(BuildError, match=r"symlink to '\.\./rootfs-evil/f' leaves the root"):
            apply_layer(layer(("evil", "symlink", "../rootfs-evil/f")), root, "img")
        assert not os.path.lexists(root / "evil")
    else:
        # An absolute link is kept (it means the image's own /x at run time) ...
        apply_layer(layer(("d", "symlink", str(sibling))), root, "img")
        entry: Entry = ("d/f", "file", b"pwned")
        if kind == "hardlink-via-symlink":
            entry = ("h", "hardlink", "d/f")
        # ... but nothing is ever written or linked through it into the sibling.
        with pytest.raises(BuildError, match="goes through symlink 'd' out of the root"):
            apply_layer(layer(entry), root, "img")
        assert not os.path.lexists(root / "h")
    assert sorted(p.name for p in sibling.iterdir()) == ["f"]
    assert (sibling / "f").read_text() == "host file"
    assert (sibling / "f").stat().st_nlink == 1
