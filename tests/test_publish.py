"""Publishing without builds: content store, signed sidecars (checked with openssl), generations
switched by one rename, rollback and gc."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from imagefactory.config import Config, load_config
from imagefactory.errors import InvalidInput
from imagefactory.publish import generations
from imagefactory.publish.content import ContentStore, digests_of
from imagefactory.publish.sidecars import sidecars
from imagefactory.signing.keys import generate_key, save_public_key

CONFIG = """\
sources:
  registry: oci-layout:oci
  verify:
    publicKey: cosign.pub
versions:
  list: [v1.11.5]
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "config.yaml").write_text(CONFIG)
    return load_config(tmp_path / "config.yaml")


def publish_files(config: Config, files: dict[str, bytes]) -> generations.Generation:
    store = ContentStore(config)
    digests = {path: store.add_bytes(data) for path, data in files.items()}
    manifest = {"site": {"key": "k", "files": {}}, "cells": {"c": {"key": "x", "files": digests}}}
    return generations.assemble(config, digests, manifest, {"cells": {"c": "x"}}, {"built": ["c"]})


def test_sidecars_verify_with_openssl_and_sha_sums(tmp_path: Path) -> None:
    key = generate_key()
    save_public_key(key, tmp_path / "signing-key.pub")
    asset = tmp_path / "metal-amd64.iso"
    asset.write_bytes(os.urandom(100_000))
    for path, data in sidecars("image/x/v1/metal-amd64.iso", digests_of(asset), key).items():
        (tmp_path / Path(path).name).write_bytes(data)
    for tool in ("sha256sum", "sha512sum"):
        ext = tool[:6]
        subprocess.run([tool, "-c", f"metal-amd64.iso.{ext}"], cwd=tmp_path, check=True)
    # The README's command, verbatim.
    command = (
        "openssl dgst -sha256 -verify signing-key.pub "
        "-signature <(base64 -d metal-amd64.iso.sig) metal-amd64.iso"
    )
    ok = subprocess.run(
        ["bash", "-c", command], check=False, cwd=tmp_path, capture_output=True, text=True
    )
    assert ok.returncode == 0 and "Verified OK" in ok.stdout
    asset.write_bytes(asset.read_bytes()[:-1] + b"!")
    bad = subprocess.run(
        ["bash", "-c", command], check=False, cwd=tmp_path, capture_output=True, text=True
    )
    assert bad.returncode != 0


def test_generation_is_hard_links_into_the_store_and_switches_atomically(config: Config) -> None:
    first = publish_files(config, {"image/a/v1/kernel-amd64": b"kernel one"})
    public = config.public
    assert public.is_symlink() and not os.path.isabs(os.readlink(public))
    published = public / "image/a/v1/kernel-amd64"
    store_file = ContentStore(config).path(
        first.manifest()["cells"]["c"]["files"]["image/a/v1/kernel-amd64"]
    )
    assert published.stat().st_ino == store_file.stat().st_ino
    assert (
        store_file.stat().st_mode & 0o222 == 0
    )  # read-only: a published link can't edit the store
    second = publish_files(config, {"image/a/v1/kernel-amd64": b"kernel two"})
    assert generations.current(config) == second
    assert published.read_bytes() == b"kernel two"
    assert (first.root / "image/a/v1/kernel-amd64").read_bytes() == b"kernel one"
    assert generations.current_keys(config)["generation"] == second.number


def test_a_killed_publish_leaves_the_previous_generation(config: Config) -> None:
    publish_files(config, {"versions": b"one\n"})
    # A publish killed while linking: a temporary tree, never switched to, cleared next time.
    partial = generations.generations_dir(config) / ".tmp-000002-1"
    (partial / "image").mkdir(parents=True)
    assert (config.public / "versions").read_bytes() == b"one\n"
    gen = publish_files(config, {"versions": b"two\n"})
    assert not partial.exists() and gen.number == 2


def test_rollback_and_gc(config: Config) -> None:
    gens = [publish_files(config, {"versions": f"{n}\n".encode()}) for n in range(3)]
    assert generations.rollback(config).number == gens[1].number
    assert (config.public / "versions").read_bytes() == b"1\n"
    assert generations.rollback(config, 3).number == 3
    with pytest.raises(InvalidInput):
        generations.gc(config, 0)
    only_first = ContentStore(config).path(gens[0].manifest()["cells"]["c"]["files"]["versions"])
    assert only_first.is_file()
    done = generations.gc(config, 1)
    assert done.generations == (1, 2) and done.files == 2
    assert not gens[0].root.exists() and not only_first.exists()
    assert [g.number for g in generations.complete_generations(config)] == [3]
    assert (config.public / "versions").read_bytes() == b"2\n"


def test_gc_keeps_the_serving_generation(config: Config) -> None:
    for n in range(3):
        publish_files(config, {"versions": f"{n}\n".encode()})
    generations.rollback(config, 1)
    generations.gc(config, 1)
    assert [g.number for g in generations.complete_generations(config)] == [1, 3]
    assert (config.public / "versions").read_bytes() == b"0\n"


def test_a_directory_at_public_is_refused(config: Config) -> None:
    config.public.mkdir()
    with pytest.raises(InvalidInput, match="not a link to a generation"):
        publish_files(config, {"versions": b"x\n"})
