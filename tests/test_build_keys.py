"""Build cache keys and the keyed store step, without the sample release (fast: mutation-tested).

A key is the sha256 of canonical JSON of the build format, the factory version, the step and its
inputs; `Build.cached` runs the builder once per key and serves verified outputs after that.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from imagefactory import __version__, build, store
from imagefactory.build import Build
from imagefactory.config import load_config
from imagefactory.errors import BuildError
from imagefactory.imager import pcr
from imagefactory.inputs import LockedSources
from imagefactory.profile import resolve
from imagefactory.schematic import parse_schematic
from imagefactory.sources import LOCK_FORMAT, lock_source, write_lock
from imagefactory.versions import TalosVersion

CONFIG = """\
sources:
  registry: oci-layout:oci
  namespace: mirror
  verify:
    disabled: true
versions:
  list: [v1.11.5]
"""


@pytest.fixture
def kernel_build(tmp_path: Path) -> Build:
    """A real Build of kernel-amd64 over an empty lock; only its store is used by `cached`."""
    (tmp_path / "config.yaml").write_text(CONFIG)
    config = load_config(tmp_path / "config.yaml")
    write_lock(config, {"lockFormat": LOCK_FORMAT, "source": lock_source(config), "versions": {}})
    schematic = parse_schematic(b"{}")
    profile = resolve("kernel-amd64", TalosVersion.parse("1.11.5"), schematic)
    return Build(config, LockedSources(config), schematic, profile)


class Builder:
    """A builder writing `content` to its output, counting its runs."""

    def __init__(self, content: bytes = b"kernel") -> None:
        self.content = content
        self.runs = 0

    def __call__(self, out: Path) -> None:
        self.runs += 1
        out.write_bytes(self.content)


def test_key_is_sha256_of_canonical_json_of_format_version_and_parts() -> None:
    parts = {"step": "kernel", "b": [1, 2], "a": "x"}
    canonical = json.dumps(
        {
            "a": "x",
            "b": [1, 2],
            "factory": __version__,
            "format": build.BUILD_FORMAT,
            "step": "kernel",
        },
        separators=(",", ":"),
    )
    assert build._key(parts) == hashlib.sha256(canonical.encode()).hexdigest()


def test_key_ignores_part_order_and_tells_every_value_apart() -> None:
    base = {"step": "kernel", "imager": "sha256:" + "1" * 64, "arch": "amd64"}
    assert build._key(base) == build._key(dict(reversed(base.items())))
    assert build._key(base) != build._key({**base, "arch": "arm64"})
    assert build._key(base) != build._key({**base, "extra": ""})
    assert build._key({"p": Path("/a/b")}) == build._key({"p": "/a/b"})  # paths by their text


def test_key_changes_with_the_build_format(monkeypatch: pytest.MonkeyPatch) -> None:
    before = build._key({"step": "kernel"})
    monkeypatch.setattr(build, "BUILD_FORMAT", build.BUILD_FORMAT + 1)
    assert build._key({"step": "kernel"}) != before


def test_cached_builds_once_per_key_under_builds_key_name(kernel_build: Build) -> None:
    make = Builder()
    first = kernel_build.cached("kernel", {"digest": "a"}, "vmlinuz", make)
    key = build._key({"step": "kernel", "digest": "a"})
    assert first == kernel_build.config.store / "builds" / key / "vmlinuz"
    assert first.read_bytes() == b"kernel" and store.verified_output(first)
    assert kernel_build.cached("kernel", {"digest": "a"}, "vmlinuz", make) == first
    assert make.runs == 1
    assert not list((kernel_build.config.store / "builds").glob(".work-*"))  # scratch removed


def test_cached_keys_differ_by_step_and_parts(kernel_build: Build) -> None:
    make = Builder()
    a = kernel_build.cached("kernel", {"digest": "a"}, "out", make)
    b = kernel_build.cached("kernel", {"digest": "b"}, "out", make)
    c = kernel_build.cached("initramfs", {"digest": "a"}, "out", make)
    assert len({a.parent, b.parent, c.parent}) == 3 and make.runs == 3


def test_cached_rebuilds_an_output_that_fails_verification(kernel_build: Build) -> None:
    final = kernel_build.cached("kernel", {}, "vmlinuz", Builder(b"good"))
    final.write_bytes(b"evil")
    again = Builder(b"good")
    assert kernel_build.cached("kernel", {}, "vmlinuz", again).read_bytes() == b"good"
    assert again.runs == 1


def test_builder_that_writes_nothing_is_an_error(kernel_build: Build) -> None:
    with pytest.raises(BuildError, match=r"^uki: the builder wrote no uki\.efi$"):
        kernel_build.cached("uki", {}, "uki.efi", lambda out: None)


def test_pcr_sidecar_moves_beside_the_output(kernel_build: Build) -> None:
    def make(out: Path) -> None:
        out.write_bytes(b"uki")
        pcr.sidecar_path(out).write_text("{}")

    final = kernel_build.cached("uki", {}, "uki.efi", make)
    assert pcr.sidecar_path(final).read_text() == "{}"


def test_a_build_finished_while_waiting_for_the_lock_is_not_redone(kernel_build: Build) -> None:
    key = build._key({"step": "kernel"})
    final = kernel_build.config.store / "builds" / key / "vmlinuz"
    waiting = Builder()
    with store.locked(final.parent):
        worker = threading.Thread(
            target=kernel_build.cached, args=("kernel", {}, "vmlinuz", waiting)
        )
        worker.start()
        worker.join(0.5)  # blocked on the lock held here, after its first (missed) check
        assert worker.is_alive()
        out = kernel_build.config.store / "elsewhere"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"kernel from the other build")
        store.install_output(out, final)
    worker.join(10)
    assert waiting.runs == 0 and final.read_bytes() == b"kernel from the other build"


def test_builders_write_in_a_scratch_directory_beside_the_outputs(kernel_build: Build) -> None:
    # Same directory tree as the outputs, so installing is a rename, and a sweep finds dead ones.
    seen: list[Path] = []

    def make(out: Path) -> None:
        seen.append(out)
        out.write_bytes(b"kernel")

    kernel_build.cached("kernel", {}, "vmlinuz", make)
    builds = kernel_build.config.store / "builds"
    assert seen[0].parent.parent == builds and seen[0].parent.name.startswith(".work-")
