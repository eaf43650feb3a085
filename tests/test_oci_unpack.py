"""Unpacking layers: whiteouts, opaque directories, modes, and every way out of the root refused."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from imagefactory.errors import BuildError
from imagefactory.oci.build import push_image
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.pull import pull_image, unpack_image
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
    ],
)
def test_refused(tmp_path: Path, entries: list[Entry], why: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(BuildError, match=f"img: entry '.*': .*{why}"):
        apply_layer(layer(*entries), root, "img")
    assert not (tmp_path / "outside").exists()
    assert not (tmp_path / "etc").exists()


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
