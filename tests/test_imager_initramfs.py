"""The initramfs with extensions, checked with real tools: cpio -t, unsquashfs -l, xz/zstd -d.

Inputs are synthetic (a small base initramfs and extension trees) with real kernel module files
taken from a Debian kernel package, cached under ~/.cache/imagefactory/test-kmod.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from imagefactory import tools
from imagefactory.errors import BuildError, InvalidInput
from imagefactory.imager import pcr
from imagefactory.imager.extensions import ExtensionTree, load_extension
from imagefactory.imager.initramfs import build_initramfs
from imagefactory.imager.virtual import virtual_extensions
from imagefactory.quirks import Compression, quirks_for
from imagefactory.schematic import parse_schematic
from imagefactory.versions import TalosVersion

V = TalosVersion.parse
EPOCH = 1_700_000_000
CACHE = Path.home() / ".cache/imagefactory"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class Kernel:
    kver: str
    files: Path  # modules.order, modules.builtin, modules.builtin.modinfo, dummy.ko, ifb.ko


def _kernel_deb() -> Path | None:
    found = sorted(glob.glob(str(CACHE / "debs/linux-image-*-amd64_*_amd64.deb")))
    found += sorted(glob.glob(str(CACHE / "test-kmod/debs/linux-image-*-amd64_*_amd64.deb")))
    if found:
        return Path(found[0])
    debs = CACHE / "test-kmod/debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["apt-get", "download", "linux-image-amd64"], cwd=debs, check=True, capture_output=True
        )
        subprocess.run(  # the meta package points at the versioned image package
            "apt-get download $(apt-cache depends linux-image-amd64 | "
            "awk '/Depends: linux-image-[0-9]/{print $2; exit}')",
            shell=True,
            cwd=debs,
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    found = sorted(glob.glob(str(debs / "linux-image-*-amd64_*_amd64.deb")))
    return Path(found[0]) if found else None


@pytest.fixture(scope="session")
def kernel() -> Kernel:
    deb = _kernel_deb()
    if deb is None:
        pytest.skip("no Debian kernel package available for real kernel modules")
    kver = deb.name.split("_")[0].removeprefix("linux-image-")
    files = CACHE / "test-kmod" / kver
    names = ["modules.order", "modules.builtin", "modules.builtin.modinfo", "dummy.ko", "ifb.ko"]
    if not all((files / n).is_file() for n in names):
        with tempfile.TemporaryDirectory() as tmp:
            members = [f"./lib/modules/{kver}/{n}" for n in names[:3]] + [
                f"./lib/modules/{kver}/kernel/drivers/net/{n}" for n in names[3:]
            ]
            tar = subprocess.run(
                ["dpkg-deb", "--fsys-tarfile", deb], check=True, capture_output=True
            )
            subprocess.run(["tar", "-x", "-C", tmp, *members], input=tar.stdout, check=True)
            files.mkdir(parents=True, exist_ok=True)
            for member in members:
                shutil.copyfile(Path(tmp) / member, files / Path(member).name)
    return Kernel(kver, files)


def sh(*argv: str | Path, cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, input=stdin, check=True, capture_output=True
    ).stdout


def cpio_create(root: Path) -> bytes:
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = "".join(f"{n}\n" for n in names).encode()
    return sh("cpio", "-H", "newc", "--create", "--quiet", "-R", "+0:+0", cwd=root, stdin=listing)


def make_base(work: Path, version: TalosVersion, kernel: Kernel) -> Path:
    """A Talos-shaped base: compressed cpio{init, rootfs.sqsh} with the kernel's modules files."""
    quirks = quirks_for(version)
    rootfs = work / "base-rootfs"
    modules = rootfs / quirks.modules_path.lstrip("/") / kernel.kver
    modules.mkdir(parents=True)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        shutil.copyfile(kernel.files / name, modules / name)
    (rootfs / "usr/bin").mkdir(parents=True, exist_ok=True)
    (rootfs / "usr/bin/machined").write_text("talos\n")
    archive = work / "base-cpio"
    archive.mkdir()
    sh("mksquashfs", rootfs, archive / "rootfs.sqsh", "-all-root", "-noappend", "-quiet")
    (archive / "init").write_text("#!/bin/sh\n")
    raw = cpio_create(archive)
    if quirks.compression is Compression.ZSTD:
        data = sh("zstd", "-c", "-3", "--quiet", stdin=raw)
    else:
        data = sh("xz", "-C", "crc32", "-c", stdin=raw)
    base = work / "initramfs.xz"
    base.write_bytes(data)
    return base


def extension(
    root: Path, name: str, files: dict[str, bytes], constraint: str = ">= v1.1.0"
) -> Path:
    (root / "rootfs").mkdir(parents=True)
    for rel, data in files.items():
        path = root / "rootfs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    meta = {
        "name": name,
        "version": "v1.0.0",
        "author": "Tester",
        "description": f"{name} for tests",
        "compatibility": {"talos": {"version": constraint}},
    }
    (root / "manifest.yaml").write_text(yaml.safe_dump({"version": "v1alpha1", "metadata": meta}))
    return root


def sample_extensions(work: Path, version: TalosVersion, kernel: Kernel) -> list[ExtensionTree]:
    q = quirks_for(version)
    fw, mods = q.firmware_path.lstrip("/"), q.modules_path.lstrip("/")
    ko = kernel.files
    roots = [
        extension(work / "ext/hello", "hello", {"usr/local/bin/hello": b"#!/bin/sh\necho hi\n"}),
        extension(
            work / "ext/ucode",
            "intel-ucode",
            {
                f"{fw}/intel-ucode/06-8f-08": b"INTEL-B",
                f"{fw}/intel-ucode/06-55-04": b"INTEL-A",
                f"{fw}/amd-ucode/microcode_amd_fam17h.bin": b"AMD-17",
                f"{fw}/amd-ucode/README": b"not microcode",
                f"{fw}/vendor/blob.bin": b"\x00firmware\xff",
                "usr/local/share/ucode/VERSION": b"2024\n",
            },
        ),
        extension(
            work / "ext/dummy",
            "dummy-module",
            {f"{mods}/{kernel.kver}/extras/dummy.ko": (ko / "dummy.ko").read_bytes()},
        ),
        extension(
            work / "ext/ifb",
            "ifb-module",
            {f"{mods}/{kernel.kver}/extras/ifb.ko": (ko / "ifb.ko").read_bytes()},
        ),
    ]
    return [load_extension(r) for r in roots]


# --- reading the output back --------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    uid: int
    gid: int
    mtime: int
    data: bytes


def parse_newc(data: bytes) -> tuple[list[Entry], int]:
    """Entries of one newc archive and the offset just past its TRAILER!!! record."""
    entries: list[Entry] = []
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701", f"no newc header at {pos}"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, mtime, size, namesize = (
            fields[1],
            fields[2],
            fields[3],
            fields[5],
            fields[6],
            fields[11],
        )
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        data_start = (name_start + namesize + 3) & ~3
        pos = (data_start + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries, pos
        entries.append(Entry(name, mode, uid, gid, mtime, data[data_start : data_start + size]))


@dataclass(frozen=True)
class Split:
    prepended: bytes  # uncompressed microcode cpio, b"" if none
    base: bytes
    appended: bytes  # compressed cpio


def split_output(out: bytes, base: bytes) -> Split:
    prepended = b""
    if out.startswith(b"070701"):
        _, end = parse_newc(out)
        while end < len(out) and out[end] == 0:  # GNU cpio pads to 512-byte blocks
            end += 1
        prepended, out = out[:end], out[end:]
    assert out[: len(base)] == base, "base initramfs bytes changed"
    return Split(prepended, out[: len(base)], out[len(base) :])


def tree_order(names: list[str]) -> list[str]:
    """Parents before children, siblings sorted by name: upstream's recursive ReadDir walk."""
    return sorted(names, key=lambda n: n.split("/"))


def cpio_names(archive: bytes) -> list[str]:
    return sh("cpio", "-t", "--quiet", stdin=archive).decode().splitlines()


def sqsh_listing(path: Path) -> list[str]:
    lines = sh("unsquashfs", "-l", "-d", "", path).decode().splitlines()
    return sorted(line.lstrip("/") for line in lines if line.strip())


def unpack_appended(split: Split, compression: Compression, dest: Path) -> bytes:
    magic = ZSTD_MAGIC if compression is Compression.ZSTD else XZ_MAGIC
    assert split.appended.startswith(magic)
    raw = sh("zstd" if compression is Compression.ZSTD else "xz", "-d", "-c", stdin=split.appended)
    dest.mkdir()
    sh("cpio", "-i", "-d", "--quiet", cwd=dest, stdin=raw)
    return raw


# --- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["1.7.4", "1.10.2"])
def test_build_with_extensions(tmp_path: Path, kernel: Kernel, tag: str) -> None:
    version = V(tag)
    q = quirks_for(version)
    fw, mods = q.firmware_path.lstrip("/"), q.modules_path.lstrip("/")
    base = make_base(tmp_path, version, kernel)
    exts = sample_extensions(tmp_path, version, kernel)
    schematic = parse_schematic(b"customization:\n  extraKernelArgs: [quiet]\n")
    exts += virtual_extensions(schematic, version, tmp_path / "virtual")
    snapshot = {p: p.read_bytes() for e in exts for p in e.root.rglob("*") if p.is_file()}
    with tools.recording() as ran:
        out = build_initramfs(base, exts, version, tmp_path / "out/initramfs.xz", epoch=EPOCH)

    assert ran.calls == len(ran.argvs) and ran.seconds > 0
    # Unpack the base's modules, depmod, one squashfs per layer (sorted as strings, modules.dep
    # last), then the two cpios and the appended stream in the base's compression.
    programs = [argv[3] if argv[0] == "env" else argv[0] for argv in ran.argvs]
    packer = "zstd" if q.compression is Compression.ZSTD else "xz"
    layers = [*sorted(str(i) for i in range(len(exts))), "modules.dep"]
    assert programs == [
        packer,
        "cpio",
        "unsquashfs",
        "depmod",
        *["mksquashfs"] * len(layers),
        "cpio",
        "cpio",
        packer,
    ]
    images = [Path(argv[5]).name for argv in ran.argvs if argv[0] == "env"]
    assert images == [f"{layer}.sqsh" for layer in layers]
    assert {p: p.read_bytes() for p in snapshot} == snapshot, "extension trees were modified"
    assert sorted(os.listdir(tmp_path / "out")) == [
        "initramfs.xz",
        "initramfs.xz.pcr-digests.json",
    ], "scratch files left behind"
    assert _recorded(out) == pcr.digest_bytes(out.read_bytes())
    split = split_output(out.read_bytes(), base.read_bytes())

    # Microcode: uncompressed, in front, blobs concatenated in name order.
    assert cpio_names(split.prepended) == [
        "kernel",
        "kernel/x86",
        "kernel/x86/microcode",
        "kernel/x86/microcode/AuthenticAMD.bin",
        "kernel/x86/microcode/GenuineIntel.bin",
    ]
    micro = {e.name: e for e in parse_newc(split.prepended)[0]}
    assert micro["kernel/x86/microcode/GenuineIntel.bin"].data == b"INTEL-AINTEL-B"
    assert micro["kernel/x86/microcode/AuthenticAMD.bin"].data == b"AMD-17"

    # Appended: squashfs layers, extensions.yaml and the firmware left after microcode.
    unpacked = tmp_path / "appended"
    raw = unpack_appended(split, q.compression, unpacked)
    names = cpio_names(raw)
    fw_parts = fw.split("/")
    assert set(names) == {
        "0.sqsh",
        "1.sqsh",
        "2.sqsh",
        "3.sqsh",
        "4.sqsh",
        "extensions.yaml",
        "modules.dep.sqsh",
        *["/".join(fw_parts[: i + 1]) for i in range(len(fw_parts))],
        f"{fw}/amd-ucode",
        f"{fw}/amd-ucode/README",
        # Upstream removes the blobs, then moves what is left: an empty intel-ucode directory.
        f"{fw}/intel-ucode",
        f"{fw}/vendor",
        f"{fw}/vendor/blob.bin",
    }
    assert names == tree_order(names)
    entries = {e.name: e for e in parse_newc(raw)[0]}
    assert all(e.uid == 0 and e.gid == 0 and e.mtime == EPOCH for e in entries.values())
    assert entries[f"{fw}/vendor/blob.bin"].data == b"\x00firmware\xff"
    assert entries["0.sqsh"].mode & 0o777 == 0o644

    # Each layer, read back with unsquashfs.
    assert "usr/local/bin/hello" in sqsh_listing(unpacked / "0.sqsh")
    ucode = sqsh_listing(unpacked / "1.sqsh")
    assert "usr/local/share/ucode/VERSION" in ucode
    assert not any(line.startswith(fw) for line in ucode), "firmware must leave the layer"
    assert f"{mods}/{kernel.kver}/extras/dummy.ko" in sqsh_listing(unpacked / "2.sqsh")
    assert f"{mods}/{kernel.kver}/extras/ifb.ko" in sqsh_listing(unpacked / "3.sqsh")
    assert f"usr/local/share/schematic/{schematic.id}" in sqsh_listing(unpacked / "4.sqsh")
    dep_listing = sqsh_listing(unpacked / "modules.dep.sqsh")
    for name in ("modules.dep", "modules.alias", "modules.order", "modules.dep.bin"):
        assert f"{mods}/{kernel.kver}/{name}" in dep_listing
    assert not any(line.endswith(".ko") for line in dep_listing)
    depdir = tmp_path / "dep"
    sh("unsquashfs", "-d", depdir, "-n", unpacked / "modules.dep.sqsh")
    moddir = depdir / mods / kernel.kver
    dep = (moddir / "modules.dep").read_text()
    assert "extras/dummy.ko:" in dep and "extras/ifb.ko:" in dep
    assert "alias rtnl-link-dummy dummy" in (moddir / "modules.alias").read_text()
    stat_line = sh("unsquashfs", "-lln", unpacked / "0.sqsh").decode().splitlines()[1]
    assert " 0/0 " in stat_line
    mkfs_time = sh("unsquashfs", "-mkfs-time", unpacked / "0.sqsh").decode().strip()
    assert mkfs_time == str(EPOCH)

    # extensions.yaml: upstream's Config, one layer per image, modules.dep last.
    config = yaml.safe_load((unpacked / "extensions.yaml").read_text())
    layers = config["layers"]
    assert [layer["image"] for layer in layers] == [
        "0.sqsh",
        "1.sqsh",
        "2.sqsh",
        "3.sqsh",
        "4.sqsh",
        "modules.dep.sqsh",
    ]
    assert layers[0]["metadata"] == {
        "name": "hello",
        "version": "v1.0.0",
        "author": "Tester",
        "description": "hello for tests",
        "compatibility": {"talos": {"version": ">= v1.1.0"}},
    }
    assert layers[4]["metadata"]["name"] == "schematic"
    assert layers[4]["metadata"]["version"] == schematic.id
    assert ("extraInfo" in layers[4]["metadata"]) is q.overlays
    assert layers[5]["metadata"] == {
        "name": "modules.dep",
        "version": kernel.kver,
        "author": "Talos Machinery",
        "description": "Combined modules.dep for all extensions",
        "compatibility": {"talos": {"version": ""}},
    }


def test_extensions_yaml_bytes_and_no_microcode(tmp_path: Path, kernel: Kernel) -> None:
    version = V("1.9.0")
    base = make_base(tmp_path, version, kernel)
    exts = [
        load_extension(extension(tmp_path / "e", "a", {"usr/local/a": b"a"}, ">=1.2.0 <1.99.0"))
    ]
    out = build_initramfs(base, exts, version, tmp_path / "o.xz", epoch=EPOCH)
    split = split_output(out.read_bytes(), base.read_bytes())
    assert split.prepended == b""  # no microcode, nothing in front
    unpacked = tmp_path / "u"
    raw = unpack_appended(split, Compression.ZSTD, unpacked)
    assert cpio_names(raw) == ["0.sqsh", "extensions.yaml"]
    assert (unpacked / "extensions.yaml").read_text() == (
        "layers:\n"
        "    - image: 0.sqsh\n"
        "      metadata:\n"
        "        name: a\n"
        "        version: v1.0.0\n"
        "        author: Tester\n"
        "        description: a for tests\n"
        "        compatibility:\n"
        "            talos:\n"
        "                version: '>=1.2.0 <1.99.0'\n"
    )


def test_layer_order_is_string_order(tmp_path: Path, kernel: Kernel) -> None:
    version = V("1.10.0")
    base = make_base(tmp_path, version, kernel)
    exts = [
        load_extension(extension(tmp_path / f"e{i}", f"ext{i}", {f"usr/local/{i}": b"x"}))
        for i in range(11)
    ]
    out = build_initramfs(base, exts, version, tmp_path / "o.xz", epoch=EPOCH)
    unpacked = tmp_path / "u"
    unpack_appended(split_output(out.read_bytes(), base.read_bytes()), Compression.ZSTD, unpacked)
    layers = yaml.safe_load((unpacked / "extensions.yaml").read_text())["layers"]
    order = ["0", "1", "10", *[str(i) for i in range(2, 10)]]
    assert [layer["image"] for layer in layers] == [f"{i}.sqsh" for i in order]
    assert [layer["metadata"]["name"] for layer in layers] == [f"ext{i}" for i in order]


def test_reproducible_in_fresh_directories(tmp_path: Path, kernel: Kernel) -> None:
    version = V("1.10.0")
    base = make_base(tmp_path, version, kernel)
    outputs = []
    for shift in (0, 1000):
        work = tmp_path / f"run{shift}"
        work.mkdir()
        exts = sample_extensions(work, version, kernel)
        # Different input mtimes must not matter.
        for path in work.rglob("*"):
            os.utime(path, (EPOCH + shift, EPOCH + shift), follow_symlinks=False)
        out = build_initramfs(base, exts, version, work / "out/initramfs.xz", epoch=EPOCH)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_excluded_extension_fails_before_any_work(tmp_path: Path, kernel: Kernel) -> None:
    base = make_base(tmp_path, V("1.8.0"), kernel)
    exts = [
        load_extension(extension(tmp_path / "ok", "ok", {"usr/local/a": b"a"})),
        load_extension(extension(tmp_path / "new", "new", {"usr/local/b": b"b"}, ">= v1.9.0")),
    ]
    out_dir = tmp_path / "out"
    with pytest.raises(InvalidInput) as info:
        build_initramfs(base, exts, V("1.8.0"), out_dir / "initramfs.xz", epoch=EPOCH)
    assert "version constraint >= v1.9.0 can't be satisfied with Talos version 1.8.0" in str(
        info.value
    )
    assert not out_dir.exists()


def test_modules_for_another_kernel_are_bad_input(tmp_path: Path, kernel: Kernel) -> None:
    version = V("1.10.0")
    base = make_base(tmp_path, version, kernel)
    ko = (kernel.files / "dummy.ko").read_bytes()
    ext = extension(tmp_path / "e", "wrong-kernel", {"usr/lib/modules/9.9.9/extras/dummy.ko": ko})
    with pytest.raises(InvalidInput, match="no kernel modules for the base kernel"):
        build_initramfs(base, [load_extension(ext)], version, tmp_path / "o/i.xz", epoch=EPOCH)
    assert os.listdir(tmp_path / "o") == []


def test_dangling_firmware_symlink_is_bad_input(tmp_path: Path, kernel: Kernel) -> None:
    version = V("1.10.0")
    base = make_base(tmp_path, version, kernel)
    ext = extension(tmp_path / "e", "fw", {"usr/lib/firmware/a.bin": b"a"})
    (ext / "rootfs/usr/lib/firmware/b.bin").symlink_to("missing.bin")
    with pytest.raises(InvalidInput, match=r"b\.bin: No such file"):
        build_initramfs(base, [load_extension(ext)], version, tmp_path / "o/i.xz", epoch=EPOCH)


def test_firmware_symlinks_are_copied_as_files(tmp_path: Path, kernel: Kernel) -> None:
    version = V("1.10.0")
    base = make_base(tmp_path, version, kernel)
    ext = extension(tmp_path / "e", "fw", {"usr/lib/firmware/a.bin": b"payload"})
    (ext / "rootfs/usr/lib/firmware/b.bin").symlink_to("a.bin")
    out = build_initramfs(base, [load_extension(ext)], version, tmp_path / "o.xz", epoch=EPOCH)
    raw = unpack_appended(
        split_output(out.read_bytes(), base.read_bytes()), Compression.ZSTD, tmp_path / "u"
    )
    entries = {e.name: e for e in parse_newc(raw)[0]}
    assert entries["usr/lib/firmware/b.bin"].data == b"payload"  # upstream copies the target


def test_bad_base(tmp_path: Path, kernel: Kernel) -> None:
    version = V("1.10.0")
    ko = (kernel.files / "dummy.ko").read_bytes()
    ext = load_extension(
        extension(tmp_path / "e", "m", {f"usr/lib/modules/{kernel.kver}/extras/d.ko": ko})
    )
    with pytest.raises(BuildError, match="does not exist"):
        build_initramfs(tmp_path / "missing", [ext], version, tmp_path / "o.xz", epoch=EPOCH)
    plain = tmp_path / "plain"
    plain.write_bytes(b"070701" + b"0" * 200)
    with pytest.raises(BuildError, match="neither xz nor zstd"):
        build_initramfs(plain, [ext], version, tmp_path / "o.xz", epoch=EPOCH)
    no_rootfs = tmp_path / "norootfs"
    (tmp_path / "nr").mkdir()
    (tmp_path / "nr/init").write_text("x")
    no_rootfs.write_bytes(sh("zstd", "-c", "--quiet", stdin=cpio_create(tmp_path / "nr")))
    with pytest.raises(BuildError, match=r"has no rootfs\.sqsh"):
        build_initramfs(no_rootfs, [ext], version, tmp_path / "o.xz", epoch=EPOCH)


def test_no_extensions_copies_base(tmp_path: Path, kernel: Kernel) -> None:
    base = make_base(tmp_path, V("1.10.0"), kernel)
    out = build_initramfs(base, [], V("1.10.0"), tmp_path / "o/initramfs.xz", epoch=EPOCH)
    assert out.read_bytes() == base.read_bytes()
    assert _recorded(out) == pcr.digest_bytes(base.read_bytes())


def _recorded(out: Path) -> dict[str, bytes]:
    """The digests in the sidecar written by build_initramfs, checked against the final file."""
    sidecar = json.loads(pcr.sidecar_path(out).read_bytes())
    st = out.stat()
    assert (sidecar["size"], sidecar["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
    return {bank: bytes.fromhex(sidecar[bank]) for bank in pcr.BANK_NAMES}


# --- symlinks resolve inside the extension, never on the build host -------------------------------


def appended_entries(out: Path, base: Path, dest: Path) -> dict[str, Entry]:
    raw = unpack_appended(split_output(out.read_bytes(), base.read_bytes()), Compression.ZSTD, dest)
    return {e.name: e for e in parse_newc(raw)[0]}


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    """A file and a directory of the build host that no extension may carry."""
    secret = tmp_path / "host/secret"
    secret.parent.mkdir()
    secret.write_bytes(b"HOST-ONLY")
    return secret


@pytest.mark.parametrize("target", ["/etc/hostname", "HOST_FILE", "HOST_DIR"])
def test_absolute_firmware_symlink_to_the_host_is_not_followed(
    tmp_path: Path, kernel: Kernel, host_secret: Path, target: str
) -> None:
    version = V("1.10.0")
    base = make_base(tmp_path, version, kernel)
    ext = extension(tmp_path / "e", "fw", {"usr/lib/firmware/a.bin": b"a"})
    link = {"HOST_FILE": str(host_secret), "HOST_DIR": str(host_secret.parent)}.get(target, target)
    (ext / "rootfs/usr/lib/firmware/leak").symlink_to(link)
    with pytest.raises(InvalidInput, match=r"extension 'fw': usr/lib/firmware/leak: No such file"):
        build_initramfs(base, [load_extension(ext)], version, tmp_path / "o/i.xz", epoch=EPOCH)
    assert os.listdir(tmp_path / "o") == []


def test_absolute_symlinks_resolve_inside_the_rootfs(
    tmp_path: Path, kernel: Kernel, host_secret: Path
) -> None:
    version = V("1.10.0")
    base = make_base(tmp_path, version, kernel)
    ext = extension(
        tmp_path / "e",
        "fw",
        {
            "usr/lib/firmware/a.bin": b"payload",
            # Same absolute path as a host file: the extension's own copy wins.
            f"{str(host_secret).lstrip('/')}": b"EXTENSION-COPY",
            "usr/share/fw/dir/c.bin": b"in a linked directory",
            "usr/lib/firmware/intel-ucode/real/06-01": b"UCODE-VIA-LINK",
        },
    )
    fw = ext / "rootfs/usr/lib/firmware"
    (fw / "b.bin").symlink_to("/usr/lib/firmware/a.bin")
    (fw / "own").symlink_to(host_secret)
    (fw / "dir").symlink_to("/usr/share/fw/dir")
    (fw / "up.bin").symlink_to("../../../usr/lib/firmware/a.bin")
    (fw / "intel-ucode/06-01").symlink_to("/usr/lib/firmware/intel-ucode/real/06-01")
    out = build_initramfs(base, [load_extension(ext)], version, tmp_path / "o.xz", epoch=EPOCH)
    entries = appended_entries(out, base, tmp_path / "u")
    assert entries["usr/lib/firmware/b.bin"].data == b"payload"
    assert entries["usr/lib/firmware/own"].data == b"EXTENSION-COPY"
    assert entries["usr/lib/firmware/dir/c.bin"].data == b"in a linked directory"
    assert entries["usr/lib/firmware/up.bin"].data == b"payload"
    assert all(b"HOST-ONLY" not in e.data for e in entries.values())
    micro = {
        e.name: e
        for e in parse_newc(split_output(out.read_bytes(), base.read_bytes()).prepended)[0]
    }
    assert micro["kernel/x86/microcode/GenuineIntel.bin"].data == b"UCODE-VIA-LINK"
    assert "usr/lib/firmware/intel-ucode/06-01" not in entries  # the blob went to the front


@pytest.mark.parametrize(
    ("links", "message"),
    [
        ({"leak": "../../../../etc/hostname"}, "leak: symlink leaves the rootfs"),
        ({"a": "b", "b": "a"}, "a: symlink loop"),
        ({"self": "self"}, "self: symlink loop"),
        ({"again": "."}, "again: symlink loop"),
        ({"parent": "/usr/lib"}, "parent: symlink loop"),
    ],
)
def test_bad_firmware_symlinks_are_bad_input(
    tmp_path: Path, kernel: Kernel, links: dict[str, str], message: str
) -> None:
    version = V("1.10.0")
    base = make_base(tmp_path, version, kernel)
    ext = extension(tmp_path / "e", "fw", {"usr/lib/firmware/a.bin": b"a"})
    for name, target in links.items():
        (ext / "rootfs/usr/lib/firmware" / name).symlink_to(target)
    with pytest.raises(InvalidInput, match=f"extension 'fw': usr/lib/firmware/{message}"):
        build_initramfs(base, [load_extension(ext)], version, tmp_path / "o/i.xz", epoch=EPOCH)


def test_modules_path_linked_to_the_host_carries_no_modules(tmp_path: Path, kernel: Kernel) -> None:
    version = V("1.10.0")
    base = make_base(tmp_path, version, kernel)
    ext = extension(tmp_path / "e", "m", {"usr/local/a": b"a"})
    # A modules tree for the base kernel exists on the host, at a path the extension lacks.
    host = tmp_path / "host-modules"
    (host / kernel.kver / "extras").mkdir(parents=True)
    shutil.copyfile(kernel.files / "dummy.ko", host / kernel.kver / "extras/dummy.ko")
    (ext / "rootfs/usr/lib").mkdir()
    (ext / "rootfs/usr/lib/modules").symlink_to(host)
    out = build_initramfs(base, [load_extension(ext)], version, tmp_path / "o.xz", epoch=EPOCH)
    entries = appended_entries(out, base, tmp_path / "u")
    assert sorted(entries) == ["0.sqsh", "extensions.yaml"]


def test_xz_initramfs_is_the_same_on_one_core(tmp_path: Path, kernel: Kernel) -> None:
    """The appended stream doesn't depend on the cores the build may use."""
    version = V("1.7.4")
    base = make_base(tmp_path, version, kernel)
    outputs = []
    for cpus in (os.sched_getaffinity(0), {min(os.sched_getaffinity(0))}):
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cpus)
        try:
            work = tmp_path / f"cpus{len(cpus)}"
            work.mkdir()
            exts = sample_extensions(work, version, kernel)
            out = build_initramfs(base, exts, version, work / "o.xz", epoch=EPOCH)
        finally:
            os.sched_setaffinity(0, before)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    appended = split_output(outputs[0], base.read_bytes()).appended
    (tmp_path / "appended.xz").write_bytes(appended)
    listing = sh("xz", "--robot", "--list", "--verbose", tmp_path / "appended.xz").decode()
    assert listing.count("\nblock\t") == 1  # single-threaded: one block, whatever the cores
