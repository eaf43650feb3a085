"""Regressions the hardening review found untested: a rotated verification key, an overlay with
options only, and two schematics sharing extensions in one store.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml
from build_helpers import private_config, write_schematic
from hostile_cli import run_cli

from imagefactory.schematic import parse_schematic

VERSION = "v1.11.5"


def test_overlay_with_options_only() -> None:
    """Upstream's Overlay has image and name without omitempty: they are emitted empty."""
    schematic = parse_schematic(b"overlay: {options: {b: [x], a: 1}}\n")
    assert schematic.overlay.name == "" and dict(schematic.overlay.options) == {"a": 1, "b": ("x",)}
    assert schematic.canonical() == (
        b'overlay:\n    image: ""\n    name: ""\n    options:\n        a: 1\n        b:\n'
        b"            - x\ncustomization: {}\n"
    )
    assert schematic.id == hashlib.sha256(schematic.canonical()).hexdigest()
    assert parse_schematic(schematic.canonical()) == schematic
    assert schematic.id != parse_schematic(b"customization: {}\n").id


def test_rotated_verification_key_refuses_the_old_lock(
    sample_release: Path, tmp_path: Path
) -> None:
    config = private_config(sample_release, tmp_path / "site")
    schematic = write_schematic(tmp_path)
    argv = ["build", "--config", config, "--schematic", schematic, "--version", VERSION]
    argv += ["--asset", "cmdline-metal-amd64"]
    assert run_cli(*argv, "--out", tmp_path / "before").code == 0
    private = subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    public = subprocess.run(
        ["openssl", "ec", "-pubout"], input=private, capture_output=True, check=True
    ).stdout
    (tmp_path / "rotated.pub").write_bytes(public)
    document = yaml.safe_load(config.read_text())
    document["sources"]["verify"]["publicKey"] = str(tmp_path / "rotated.pub")
    config.write_text(yaml.safe_dump(document))
    outcome = run_cli(*argv, "--out", tmp_path / "after")
    assert outcome.code == 2, outcome
    assert "made from another source or verification" in outcome.stderr
    assert not (tmp_path / "after").exists()


def test_same_extensions_different_schematics_give_different_initramfs(
    sample_release: Path, tmp_path: Path
) -> None:
    """The schematic's own extension (its ID) is in the initramfs: a shared cache key would mix them."""
    config = private_config(sample_release, tmp_path / "site")
    digests = []
    for index, arg in enumerate(["talos.marker=one", "talos.marker=two"]):
        text = (
            "customization:\n  extraKernelArgs: [" + arg + "]\n"
            "  systemExtensions:\n    officialExtensions: [siderolabs/intel-ucode]\n"
        )
        where = tmp_path / f"s{index}"
        where.mkdir()
        schematic = write_schematic(where, text)
        argv = ["build", "--config", config, "--schematic", schematic, "--version", VERSION]
        outcome = run_cli(
            *argv, "--asset", "initramfs-amd64.xz", "--out", where / "out", timeout=600
        )
        assert outcome.code == 0, outcome
        digests.append(hashlib.sha256((where / "out" / "initramfs-amd64.xz").read_bytes()).digest())
    assert digests[0] != digests[1]
