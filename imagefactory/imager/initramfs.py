"""The initramfs with system extensions: upstream's `extensions.Builder`, rootless, reproducible.

Base bytes stay untouched: microcode goes into a cpio prepended to them, everything else is appended.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagefactory import archive, tools
from imagefactory.errors import BuildError, InvalidInput
from imagefactory.goyaml import GoStruct, marshal
from imagefactory.imager import pcr
from imagefactory.imager.extensions import (
    ExtensionTree,
    Metadata,
    check_compatible,
    resolve_in_rootfs,
)
from imagefactory.quirks import Quirks, quirks_for
from imagefactory.versions import TalosVersion

ROOTFS_ASSET = "rootfs.sqsh"
EXTENSIONS_YAML = "extensions.yaml"
MODULES_DEP = "modules.dep"
# Upstream's /etc/modules.d/10-extra-modules.conf (hack/extra-modules.conf) in the imager image.
DEPMOD_CONFIG = "search extras built-in\n"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Early microcode: the kernel reads these names from an uncompressed cpio at the very front.
MICROCODE = (
    ("intel-ucode", "*", "kernel/x86/microcode/GenuineIntel.bin"),
    ("amd-ucode", "microcode_amd*.bin", "kernel/x86/microcode/AuthenticAMD.bin"),
)
# Upstream creates copies with the source mode under the imager container's umask 022.
UMASK = 0o022


@dataclass(frozen=True)
class _Layer:
    """One squashfs layer: its staging name (`<directory>.sqsh`), its tree and its metadata."""

    directory: str
    rootfs: Path
    metadata: Metadata


def _rel(path: str) -> str:
    return path.lstrip("/")


def _ordered(extensions: Sequence[ExtensionTree]) -> list[_Layer]:
    # Upstream unpacks extension j into a directory named str(j) and lists them sorted as strings,
    # so the 11th extension ("10") comes before the 3rd ("2").
    layers = [_Layer(str(i), ext.rootfs, ext.manifest.metadata) for i, ext in enumerate(extensions)]
    return sorted(layers, key=lambda layer: layer.directory)


def _resolve(layer: _Layer, rel: str) -> str | None:
    return resolve_in_rootfs(layer.metadata.name, layer.rootfs, rel)


def _replace_link(dst: Path) -> None:
    # Never write through a symlink of the destination tree (the base's modules may carry some).
    if dst.is_symlink():
        dst.unlink()


def _copy_deref(
    layer: _Layer,
    rel: str,
    dst: Path,
    skip: frozenset[str] = frozenset(),
    parents: frozenset[str] = frozenset(),
) -> None:
    """Copy the layer's tree at rel to dst, keeping permission bits.

    Symlinks are copied as their targets (upstream opens and copies), resolved inside the layer's
    rootfs; `skip` holds entry paths (real parent + name) left out.
    """
    real = _resolve(layer, rel)
    if real is None:
        raise InvalidInput(f"extension {layer.metadata.name!r}: {rel}: No such file or directory")
    if any(real in ("", parent) or parent.startswith(f"{real}/") for parent in parents):
        # A directory that holds the copy in progress: following it would never end.
        raise InvalidInput(f"extension {layer.metadata.name!r}: {rel}: symlink loop")
    src = layer.rootfs / real
    st = os.lstat(src)
    _replace_link(dst)
    if stat.S_ISDIR(st.st_mode):
        if not dst.is_dir():
            dst.mkdir(parents=True)
            os.chmod(dst, stat.S_IMODE(st.st_mode) & ~UMASK)
        for child in sorted(os.listdir(src)):
            entry = f"{real}/{child}" if real else child
            if entry not in skip:
                _copy_deref(layer, entry, dst / child, skip, parents | {real})
        return
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(
            f"extension {layer.metadata.name!r}: {rel}: special files are not allowed in extensions"
        )
    shutil.copyfile(src, dst)
    os.chmod(dst, stat.S_IMODE(st.st_mode) & ~UMASK)


def _mkdirs(root: Path, rel: Path) -> None:
    """Create root/rel and its parents below root with mode 0755 (MkdirAll 0o755, umask 022)."""
    directory = root
    for part in rel.parts:
        directory = directory / part
        if not directory.is_dir():
            directory.mkdir(parents=True)
            os.chmod(directory, 0o755)


@dataclass(frozen=True)
class _Blob:
    """A microcode file: its entry (real parent + name, what the firmware copy skips), its file."""

    entry: str
    path: Path


def _microcode_blobs(layer: _Layer, quirks: Quirks) -> list[tuple[list[_Blob], str]]:
    """(blobs in name order, destination) per vendor; Go's Glob matches dotfiles too."""
    found = []
    for vendor, pattern, destination in MICROCODE:
        directory = _resolve(layer, f"{_rel(quirks.firmware_path)}/{vendor}")
        if directory is None or not (layer.rootfs / directory).is_dir():
            continue
        blobs = []
        for name in sorted(os.listdir(layer.rootfs / directory)):
            entry = f"{directory}/{name}"
            real = _resolve(layer, entry) if fnmatch.fnmatchcase(name, pattern) else None
            if real is not None and stat.S_ISREG(os.lstat(layer.rootfs / real).st_mode):
                blobs.append(_Blob(entry, layer.rootfs / real))
        if blobs:
            found.append((blobs, destination))
    return found


class _Build:
    """One build's state: scratch directory, staging tree, quirks and the source epoch."""

    def __init__(self, tmp: Path, quirks: Quirks, epoch: int) -> None:
        self.tmp = tmp
        self.staging = tmp / "staging"
        self.staging.mkdir()
        self.quirks = quirks
        self.epoch = epoch

    def base_modules(self, base: Path) -> tuple[Path, str]:
        """Unpack `<modules_path>` of the base rootfs.sqsh; return its directory and the kver."""
        with base.open("rb") as f:
            magic = f.read(6)
        if magic.startswith(XZ_MAGIC):
            decompress = ["xz", "-d", "-c"]
        elif magic.startswith(ZSTD_MAGIC):
            decompress = ["zstd", "-d", "-c", "--quiet"]
        else:
            raise BuildError(f"{base}: base initramfs is neither xz nor zstd compressed")
        base_cpio = self.tmp / "base.cpio"
        with base.open("rb") as src, base_cpio.open("wb") as dst:
            tools.run(decompress, stdin=src, stdout=dst)
        extract = self.tmp / "base"
        extract.mkdir()
        with base_cpio.open("rb") as src:
            tools.run(["cpio", "-i", "--quiet", ROOTFS_ASSET], cwd=extract, stdin=src)
        base_cpio.unlink()
        rootfs = extract / ROOTFS_ASSET
        if not rootfs.is_file():
            raise BuildError(f"{base}: base initramfs has no {ROOTFS_ASSET}")
        modules = self.tmp / "modules"
        tools.run(
            [
                "unsquashfs",
                "-no-xattrs",
                "-d", modules,
                "-f",
                "-n",
                rootfs,
                self.quirks.modules_path,
            ]
        )  # fmt: skip
        root = modules / _rel(self.quirks.modules_path)
        entries = sorted(root.iterdir()) if root.is_dir() else []
        if len(entries) != 1 or not entries[0].is_dir():
            raise BuildError(f"{base}: invalid kernel modules path {self.quirks.modules_path}")
        return root, entries[0].name

    def modules_layer(self, base: Path, carriers: Sequence[_Layer]) -> _Layer:
        """depmod over the base modules plus the extensions' ones -> the `modules.dep` layer."""
        root, kver = self.base_modules(base)
        for layer in carriers:
            source = f"{_rel(self.quirks.modules_path)}/{kver}"
            real = _resolve(layer, source)
            if real is None or not (layer.rootfs / real).is_dir():
                raise InvalidInput(
                    f"extension {layer.metadata.name!r} has no kernel modules for the base "
                    f"kernel {kver} under {self.quirks.modules_path}"
                )
            _copy_deref(layer, source, root / kver)
        config = self.tmp / "depmod.conf"
        config.write_text(DEPMOD_CONFIG)
        # depmod looks for <basedir>/lib/modules; with usr-merge the tree sits under usr/.
        basedir = str(root).removesuffix("/lib/modules")
        tools.run(["depmod", "--all", "--basedir", basedir, "--config", config, kver])
        tree = self.tmp / MODULES_DEP
        target = tree / _rel(self.quirks.modules_path) / kver
        tree.mkdir()
        os.chmod(tree, 0o755)
        _mkdirs(tree, target.relative_to(tree))
        for entry in sorted((root / kver).iterdir()):
            if entry.name.startswith("modules.") and entry.is_file():
                shutil.move(entry, target / entry.name)
                # depmod writes under the caller's umask; upstream's container has 022.
                os.chmod(target / entry.name, 0o644)
        metadata = Metadata(
            name=MODULES_DEP,
            version=kver,
            author="Talos Machinery",
            description="Combined modules.dep for all extensions",
        )
        return _Layer(MODULES_DEP, tree, metadata)

    def pack(self, layer: _Layer) -> str:
        """Microcode and firmware into staging, the rest into `<directory>.sqsh`; its name."""
        microcode: set[str] = set()
        for blobs, destination in _microcode_blobs(layer, self.quirks):
            out = self.staging / destination
            _mkdirs(self.staging, Path(destination).parent)
            with out.open("ab") as sink:
                for blob in blobs:
                    with blob.path.open("rb") as src:
                        shutil.copyfileobj(src, sink)
            os.chmod(out, 0o644)
            microcode.update(blob.entry for blob in blobs)
        firmware = _rel(self.quirks.firmware_path)
        if _resolve(layer, firmware) is not None:
            _copy_deref(layer, firmware, self.staging / firmware, frozenset(microcode))
        image = f"{layer.directory}.sqsh"
        archive.squashfs(
            layer.rootfs,
            self.staging / image,
            self.quirks.squashfs_compression_args,
            mtime=self.epoch,
            # Firmware (microcode included) was moved to the initramfs.
            exclude=(firmware,),
        )
        return image

    def write_config(self, layers: Sequence[tuple[str, Metadata]]) -> None:
        config = GoStruct(
            (
                (
                    "layers",
                    [
                        GoStruct((("image", image), ("metadata", metadata.to_go())))
                        for image, metadata in layers
                    ],
                ),
            )
        )
        path = self.staging / EXTENSIONS_YAML
        path.write_bytes(marshal(config))

    def listings(self) -> tuple[list[str], list[str]]:
        """(compressed, uncompressed) cpio name lists: parents first, names sorted, `kernel/` apart.

        Every entry is set to its upstream mode on the way.
        """
        compressed: list[str] = []
        uncompressed: list[str] = []

        def walk(rel: str) -> None:
            path = self.staging / rel
            for name in sorted(os.listdir(path)):
                child = f"{rel}/{name}" if rel else name
                full = self.staging / child
                if child.endswith(".sqsh") or child == EXTENSIONS_YAML:
                    os.chmod(full, 0o644)
                is_kernel = child == "kernel" or child.startswith("kernel/")
                (uncompressed if is_kernel else compressed).append(child)
                if full.is_dir() and not full.is_symlink():
                    walk(child)

        walk("")
        return compressed, uncompressed

    def cpio(self, names: list[str], sink: Path) -> None:
        with sink.open("wb") as out:
            archive.cpio_newc(self.staging, names, out, mtime=self.epoch)

    def assemble(self, base: Path, out: Path) -> None:
        compressed, uncompressed = self.listings()
        appended = self.tmp / "appended.cpio"
        self.cpio(compressed, appended)
        partial = out.with_name(f".{out.name}.partial")
        try:
            with partial.open("wb") as sink:
                if uncompressed:
                    prepended = self.tmp / "prepended.cpio"
                    self.cpio(uncompressed, prepended)
                    with prepended.open("rb") as src:
                        shutil.copyfileobj(src, sink, 1 << 20)
                with base.open("rb") as src:
                    shutil.copyfileobj(src, sink, 1 << 20)
                archive.compress(
                    appended,
                    sink,
                    self.quirks.compression,
                    xz_preset=archive.XzPreset.EXTENSIONS,
                )
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)


def build_initramfs(
    base: Path,
    extensions: Sequence[ExtensionTree],
    version: TalosVersion,
    out: Path,
    *,
    epoch: int,
) -> Path:
    """Write `out`: [microcode cpio] + base initramfs + compressed cpio of layers and firmware.

    Extensions are in profile order (official, then virtual); their trees are read, never changed.
    Constraints are checked before any work. Without extensions the base is copied as is.
    The PCR digests of `out` are recorded beside it (pcr.record_digests) for the UKIs built from it.
    """
    base, out = Path(base), Path(out)
    if not base.is_file():
        raise BuildError(f"base initramfs {base} does not exist")
    for extension in extensions:
        check_compatible(extension, version)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not extensions:
        partial = out.with_name(f".{out.name}.partial")
        shutil.copyfile(base, partial)
        os.replace(partial, out)
        pcr.record_digests(out)
        return out
    quirks = quirks_for(version)
    layers = _ordered(extensions)
    with tempfile.TemporaryDirectory(prefix="initramfs-", dir=out.parent) as scratch:
        build = _Build(Path(scratch), quirks, epoch)
        carriers = [
            layer for layer in layers if _resolve(layer, _rel(quirks.modules_path)) is not None
        ]
        if carriers:
            layers.append(build.modules_layer(base, carriers))
        written = [(build.pack(layer), layer.metadata) for layer in layers]
        build.write_config(written)
        build.assemble(base, out)
    # Every UKI built from this initramfs measures it: hash it once, now that it is final.
    pcr.record_digests(out)
    return out
