"""Extension trees: manifest parsing, blang/semver constraints, name resolution, virtual extensions."""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.errors import InvalidInput
from imagefactory.imager.constraint import (
    ConstraintError,
    SemVer,
    parse_range,
    parse_semver,
    range_matches,
    satisfies,
    trim_v,
)
from imagefactory.imager.extensions import (
    Manifest,
    Metadata,
    check_compatible,
    load_extension,
    parse_manifest,
    resolve_extensions,
    resolve_in_rootfs,
)
from imagefactory.imager.virtual import (
    embedded_config_extension,
    schematic_extension,
    virtual_extensions,
)
from imagefactory.schematic import parse_schematic
from imagefactory.versions import TalosVersion

V = TalosVersion.parse


def make_extension(
    root: Path, name: str = "siderolabs/hello", constraint: str = ">= v1.1.0", **extra: str
) -> Path:
    (root / "rootfs/usr/local/bin").mkdir(parents=True)
    (root / "rootfs/usr/local/bin/hello").write_text("#!/bin/sh\necho hi\n")
    meta = {
        "name": name,
        "version": "v1.0.0",
        "author": "Tester",
        "description": "says hi",
        "compatibility": {"talos": {"version": constraint}},
        **extra,
    }
    (root / "manifest.yaml").write_text(yaml.safe_dump({"version": "v1alpha1", "metadata": meta}))
    return root


# --- constraints -------------------------------------------------------------------------------

CASES = [
    (">= v1.1.0", "1.1.0", True),
    (">= v1.1.0", "1.0.9", False),
    (">=1.2.0 <1.9.0", "1.8.99", True),
    (">=1.2.0 <1.9.0", "1.9.0", False),
    (">= 1.2.0 < 1.9.0", "1.2.0", True),
    ("<1.5.0 || >=1.7.0", "1.6.0", False),
    ("<1.5.0 || >=1.7.0", "1.4.3", True),
    ("<1.5.0 || >=1.7.0", "1.7.0", True),
    ("1.6.0", "1.6.0", True),
    ("=1.6.0", "1.6.1", False),
    ("!=1.6.0", "1.6.1", True),
    ("!1.6.0", "1.6.0", False),
    (">1.6.0", "1.6.0", False),
    ("<=v1.6.0", "1.6.0", True),
    ("1.6.x", "1.6.9", True),
    ("1.6.x", "1.7.0", False),
    (">1.6.x", "1.7.0", True),
    (">1.6.x", "1.6.5", False),
    ("<=1.x", "1.99.0", True),
    ("<=1.x", "2.0.0", False),
    ("!=1.6.x", "1.6.3", False),
    # blang/semver expands `!=1.6.x` to `<1.6.0 >=1.7.0` AND-ed: nothing matches. Kept as upstream.
    ("!=1.6.x", "1.5.3", False),
    ("!=1.6.x", "1.8.0", False),
    # Pre-release bounds: 1.8.0 is above 1.8.0-alpha.1, and the target's pre-release is dropped.
    (">= 1.8.0-alpha.1", "1.8.0-alpha.0", True),
    ("< 1.8.0-alpha.1", "1.8.0-beta.1", False),
    (">= 1.8.0", "1.8.0-beta.1", True),
    ("", "0.0.1", True),
]


@pytest.mark.parametrize(("constraint", "version", "expected"), CASES)
def test_constraint_table(constraint: str, version: str, expected: bool) -> None:
    assert satisfies(constraint, V(version)) is expected


@pytest.mark.parametrize(
    "constraint",
    ["||", "|| >=1.0.0", ">=1.0.0 ||", ">=1.0", "~1.0.0", ">=01.0.0", ">=1.0.0-", "foo", ">= x"],
)
def test_bad_constraints_raise_invalid_input(constraint: str) -> None:
    with pytest.raises(InvalidInput, match="error parsing Talos version constraint"):
        satisfies(constraint, V("1.9.0"))


def test_trim_v_only_before_digits() -> None:
    assert trim_v(">= v1.1.0 <v2.0.0-vx.v1") == ">= 1.1.0 <2.0.0-vx.1"


def test_semver_parse_and_order() -> None:
    assert parse_semver("1.2.3-alpha.1+build.5") == SemVer(1, 2, 3, ("alpha", 1))
    order = ["1.0.0-1", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0"]
    parsed = [parse_semver(t) for t in order]
    for lo, hi in itertools.pairwise(parsed):
        assert lo.compare(hi) == -1 and hi.compare(lo) == 1
    for bad in ["1.2", "1.2.3.4", "01.2.3", "1.2.3-", "1.2.3+", "1.2.3-01", "a.b.c", ""]:
        with pytest.raises(ConstraintError):
            parse_semver(bad)


versions = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20))


@given(versions, versions, st.sampled_from(["<", "<=", ">", ">=", "=", "!="]))
def test_single_comparator_agrees_with_version_order(
    bound: tuple[int, int, int], target: tuple[int, int, int], op: str
) -> None:
    b, t = TalosVersion(*bound), TalosVersion(*target)
    expected = {
        "<": t < b,
        "<=": t <= b,
        ">": t > b,
        ">=": t >= b,
        "=": t == b,
        "!=": t != b,
    }[op]
    assert satisfies(f"{op} v{b}", t) is expected


@given(versions, versions, versions)
def test_and_or_compose(
    lo: tuple[int, int, int], hi: tuple[int, int, int], target: tuple[int, int, int]
) -> None:
    a, b, t = TalosVersion(*lo), TalosVersion(*hi), TalosVersion(*target)
    assert satisfies(f">={a} <{b}", t) is (a <= t < b)
    assert satisfies(f"<{a} || >={b}", t) is (t < a or t >= b)


@given(st.text(max_size=30))
def test_constraint_parser_never_crashes(text: str) -> None:
    try:
        parsed = parse_range(trim_v(text))
    except ConstraintError as exc:
        assert str(exc)  # a reason, never an empty message
        return
    assert isinstance(range_matches(parsed, SemVer(1, 9, 0)), bool)
    # Every bound of a group is a version the parser understood; a group that only says
    # "exactly v" matches v, whatever the other groups say.
    for group in parsed:
        assert all(isinstance(bound, SemVer) for _, bound in group)
        if len(group) == 1 and group[0][0] in ("", "=", "=="):
            assert range_matches(parsed, group[0][1]) is True


# --- manifests and trees -------------------------------------------------------------------------


def test_parse_manifest_reads_every_field() -> None:
    manifest = parse_manifest(
        b"version: v1alpha1\nmetadata:\n  name: iscsi-tools\n  version: v0.1.6\n"
        b"  author: Sidero Labs\n  description: d\n  compatibility:\n    talos:\n"
        b"      version: '>= v1.1.0'\n  extraInfo: x\n  unknown: ignored\n",
        source="m",
    )
    meta = manifest.metadata
    assert (meta.name, meta.version, meta.author, meta.description) == (
        "iscsi-tools",
        "v0.1.6",
        "Sidero Labs",
        "d",
    )
    assert (meta.talos_version, meta.extra_info) == (">= v1.1.0", "x")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "extension manifest is missing"),
        (b"version: v1alpha2\nmetadata: {name: a}\n", "unsupported manifest version"),
        (b"metadata: {name: a}\n", "unsupported manifest version"),
        (b"version: v1alpha1\nmetadata: {name: ''}\n", "metadata.name is empty"),
        (b"version: v1alpha1\nmetadata: [1]\n", "metadata: expected a mapping"),
        (b"version: v1alpha1\nmetadata: {name: [a]}\n", "metadata.name: expected a string"),
        (b"- a\n", "expected a mapping"),
        (b"version: [\n", "not valid YAML"),
        (
            b"version: v1alpha1\nmetadata: {name: a, compatibility: {talos: 3}}\n",
            "compatibility.talos: expected a mapping",
        ),
    ],
)
def test_parse_manifest_rejects(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_manifest(data, source="m")


texts = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")) | st.just("\n"),
    max_size=40,
)


@given(
    st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1), texts, texts, texts
)
def test_manifest_yaml_round_trips(name: str, version: str, description: str, extra: str) -> None:
    manifest = Manifest(
        Metadata(
            name=name,
            version=version,
            author="A",
            description=description,
            talos_version=">= v1.2.0",
            extra_info=extra,
        )
    )
    assert parse_manifest(manifest.to_yaml(), source="m") == manifest


def test_load_extension_and_bad_layouts(tmp_path: Path) -> None:
    tree = load_extension(make_extension(tmp_path / "good"))
    assert tree.name == "siderolabs/hello" and tree.rootfs == tmp_path / "good/rootfs"

    extra = make_extension(tmp_path / "extra")
    (extra / "README").write_text("no")
    with pytest.raises(InvalidInput, match="unexpected file 'README'"):
        load_extension(extra)
    no_rootfs = tmp_path / "norootfs"
    no_rootfs.mkdir()
    (no_rootfs / "manifest.yaml").write_text("version: v1alpha1\nmetadata: {name: a}\n")
    with pytest.raises(InvalidInput, match="extension rootfs is missing"):
        load_extension(no_rootfs)
    no_manifest = tmp_path / "nomanifest"
    (no_manifest / "rootfs").mkdir(parents=True)
    with pytest.raises(InvalidInput, match="extension manifest is missing"):
        load_extension(no_manifest)
    with pytest.raises(InvalidInput, match="not a directory"):
        load_extension(tmp_path / "missing")


def test_check_compatible_message(tmp_path: Path) -> None:
    tree = load_extension(make_extension(tmp_path / "e", constraint=">= v1.9.0"))
    check_compatible(tree, V("1.9.0-beta.1"))  # pre-release dropped: 1.9.0 meets >= 1.9.0
    with pytest.raises(InvalidInput) as info:
        check_compatible(tree, V("1.8.3"))
    assert str(info.value) == (
        'error validating extension "siderolabs/hello": version constraint >= v1.9.0 '
        "can't be satisfied with Talos version 1.8.3"
    )


def test_resolve_extensions(tmp_path: Path) -> None:
    catalog = {
        "siderolabs/hello": make_extension(tmp_path / "a"),
        "siderolabs/i915": make_extension(tmp_path / "b", name="i915"),
        "siderolabs/new-only": make_extension(tmp_path / "c", name="new", constraint=">=1.10.0"),
    }
    trees = resolve_extensions(["siderolabs/i915-ucode", "siderolabs/hello"], catalog, V("1.9.0"))
    assert [t.name for t in trees] == ["i915", "siderolabs/hello"]  # schematic order, alias used

    with pytest.raises(InvalidInput) as info:
        resolve_extensions(["siderolabs/nope"], catalog, V("1.9.0"))
    assert str(info.value) == (
        'official extension "siderolabs/nope" is not available for Talos version v1.9.0'
    )
    with pytest.raises(InvalidInput, match=r"version constraint >=1\.10\.0 can't be satisfied"):
        resolve_extensions(["siderolabs/hello", "siderolabs/new-only"], catalog, V("1.9.0"))


# --- virtual extensions --------------------------------------------------------------------------

SCHEMATIC = b"customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/amd-ucode]\n"


def test_schematic_extension_from_1_7(tmp_path: Path) -> None:
    schematic = parse_schematic(SCHEMATIC)
    sid = schematic.id
    tree = schematic_extension(schematic, V("1.7.0"), tmp_path / "s")
    assert (tmp_path / "s/manifest.yaml").read_bytes() == (
        "version: v1alpha1\n"
        "metadata:\n"
        "    name: schematic\n"
        f"    version: {sid}\n"
        "    author: Image Factory (https://localhost/)\n"
        "    description: Virtual extension which specifies the schematic of the image built"
        " with schematic.\n"
        "    compatibility:\n"
        "        talos:\n"
        "            version: '>= 1.0.0'\n"
        "    extraInfo: |\n"
        "        customization:\n"
        "            systemExtensions:\n"
        "                officialExtensions:\n"
        "                    - siderolabs/amd-ucode\n"
    ).encode()
    marker = tmp_path / "s/rootfs/usr/local/share/schematic" / sid
    assert marker.read_bytes() == b""
    assert stat.S_IMODE(marker.stat().st_mode) == 0o644
    for d in ["rootfs", "rootfs/usr", "rootfs/usr/local", "rootfs/usr/local/share"]:
        assert stat.S_IMODE((tmp_path / "s" / d).stat().st_mode) == 0o755
    assert tree.manifest.metadata.extra_info == schematic.canonical_bytes.decode()
    assert hashlib.sha256(tree.manifest.metadata.extra_info.encode()).hexdigest() == sid


def test_schematic_extension_before_1_7_has_no_extra_info(tmp_path: Path) -> None:
    schematic = parse_schematic(SCHEMATIC)
    tree = schematic_extension(schematic, V("1.6.7"), tmp_path / "s", external_url="https://f/")
    text = (tmp_path / "s/manifest.yaml").read_text()
    assert "extraInfo" not in text and tree.manifest.metadata.extra_info == ""
    assert tree.manifest.metadata.author == "Image Factory (https://f/)"


def test_embedded_config_extension(tmp_path: Path) -> None:
    config = b"version: v1alpha1\nmachine:\n  type: worker\n"
    tree = embedded_config_extension(config, tmp_path / "e")
    meta = tree.manifest.metadata
    assert (meta.name, meta.author, meta.talos_version) == ("embedded-config", "Imager", ">= 1.0.0")
    assert meta.version == hashlib.sha256(config).hexdigest()
    assert meta.description == "Virtual extension which embeds the machine configuration."
    path = tmp_path / "e/rootfs/usr/local/etc/talos/config.yaml"
    assert path.read_bytes() == config and stat.S_IMODE(path.stat().st_mode) == 0o400
    assert dict(tree.selinux) == {
        "usr/local/etc/talos/config.yaml": "system_u:object_r:system_state_t:s0"
    }


def test_virtual_extensions_order_and_version_gate(tmp_path: Path) -> None:
    schematic = parse_schematic(b"customization:\n  embeddedMachineConfiguration: 'a: b'\n")
    trees = virtual_extensions(schematic, V("1.12.0"), tmp_path / "v12")
    assert [t.name for t in trees] == ["schematic", "embedded-config"]
    with pytest.raises(InvalidInput) as info:
        virtual_extensions(schematic, V("1.11.5"), tmp_path / "v11")
    assert str(info.value) == "embedding configuration is not supported for Talos version v1.11.5"
    plain = virtual_extensions(parse_schematic(b"{}"), V("1.11.5"), tmp_path / "plain")
    assert [t.name for t in plain] == ["schematic"]


def test_virtual_extension_refuses_a_used_directory(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s/x").write_text("")
    with pytest.raises(InvalidInput, match="not empty"):
        schematic_extension(parse_schematic(b"{}"), V("1.9.0"), tmp_path / "s")


# --- paths inside an extension's rootfs, chroot-style ------------------------------------------------


@pytest.fixture
def chroot(tmp_path: Path) -> Path:
    """A rootfs with relative, absolute, chained and directory links; a host file beside it."""
    (tmp_path / "host-file").write_text("host")
    root = tmp_path / "rootfs"
    (root / "usr/lib/firmware/vendor").mkdir(parents=True)
    (root / "usr/lib/firmware/vendor/blob").write_text("fw")
    (root / "etc").mkdir()
    (root / "lib").symlink_to("usr/lib")
    (root / "usr/lib/firmware/rel").symlink_to("vendor/blob")
    (root / "usr/lib/firmware/abs").symlink_to("/usr/lib/firmware/vendor/blob")
    (root / "usr/lib/firmware/chain").symlink_to("abs")
    (root / "usr/lib/firmware/dir").symlink_to("/lib/firmware/vendor")
    (root / "usr/lib/firmware/host").symlink_to(tmp_path / "host-file")
    (root / "usr/lib/firmware/hostname").symlink_to("/etc/hostname")
    (root / "usr/lib/firmware/dangling").symlink_to("nothing")
    (root / "usr/lib/firmware/through-file").symlink_to("vendor/blob/x")
    (root / "usr/lib/firmware/up").symlink_to("../../../../x")
    (root / "usr/lib/firmware/dotdot").symlink_to("../../../etc")
    (root / "usr/lib/firmware/loop1").symlink_to("loop2")
    (root / "usr/lib/firmware/loop2").symlink_to("/lib/firmware/loop1")
    return root


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("usr/lib/firmware/vendor/blob", "usr/lib/firmware/vendor/blob"),
        ("/usr/lib/firmware/vendor/blob", "usr/lib/firmware/vendor/blob"),
        ("lib/firmware/rel", "usr/lib/firmware/vendor/blob"),
        ("usr/lib/firmware/abs", "usr/lib/firmware/vendor/blob"),
        ("usr/lib/firmware/chain", "usr/lib/firmware/vendor/blob"),
        ("usr/lib/firmware/dir/blob", "usr/lib/firmware/vendor/blob"),
        ("usr/lib/firmware/dotdot", "etc"),
        ("usr/lib/firmware/../firmware/./vendor", "usr/lib/firmware/vendor"),
        ("", ""),
        # Absolute targets restart at the rootfs: the host's files are not there.
        ("usr/lib/firmware/host", None),
        ("usr/lib/firmware/hostname", None),
        ("usr/lib/firmware/dangling", None),
        ("usr/lib/firmware/through-file", None),
        ("usr/lib/firmware/missing/deeper", None),
    ],
)
def test_resolve_in_rootfs(chroot: Path, path: str, expected: str | None) -> None:
    assert resolve_in_rootfs("ext", chroot, path) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("usr/lib/firmware/up", "extension 'ext': usr/lib/firmware/up: symlink leaves the rootfs"),
        ("../etc", "extension 'ext': ../etc: symlink leaves the rootfs"),
        ("usr/lib/firmware/loop1", "extension 'ext': usr/lib/firmware/loop1: symlink loop"),
    ],
)
def test_resolve_in_rootfs_rejects(chroot: Path, path: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_in_rootfs("ext", chroot, path)
    assert str(info.value) == message


NAMES = st.sampled_from(["a", "b", "c", "..", ".", ""])
TARGETS = st.lists(NAMES, min_size=1, max_size=4).map("/".join)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "a/b", "b/c"]), st.booleans(), TARGETS),
        max_size=6,
    ),
    st.lists(st.sampled_from(["a", "b", "c", ".."]), min_size=1, max_size=5).map("/".join),
)
def test_resolve_in_rootfs_never_leaves_it(
    entries: list[tuple[str, bool, str]], query: str
) -> None:
    """Any tree of links: the answer is a real, link-free path inside rootfs, None, or bad input."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "rootfs"
        root.mkdir()
        (Path(scratch) / "a").mkdir()  # a host directory right above the rootfs
        for path, absolute, target in entries:
            entry = root / path
            if entry.parent.is_symlink() or os.path.lexists(entry):
                continue
            entry.parent.mkdir(parents=True, exist_ok=True)
            entry.symlink_to(f"/{target}" if absolute else (target or "."))
        try:
            found = resolve_in_rootfs("ext", root, query)
        except InvalidInput as exc:
            assert "symlink" in str(exc)
            return
        if found is None:
            return
        real = root.joinpath(*found.split("/")) if found else root
        assert real.exists()
        parts = found.split("/") if found else []
        for i in range(len(parts)):
            assert not root.joinpath(*parts[: i + 1]).is_symlink()
        assert os.path.realpath(real).startswith(os.path.realpath(root))
