"""deploy/git: a push to a bare repository runs the pipeline (post-receive); a push with a bad
schematic is refused with the validation message (pre-receive) and nothing is published.

A tiny matrix against the sample release: one version, metal amd64, kernel and cmdline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from imagefactory import tree
from imagefactory.schematic import parse_schematic

REPO = Path(__file__).resolve().parents[2]
HOOKS = REPO / "deploy" / "git"
VERSION = "v1.11.5"
VANILLA = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
NEW_SCHEMATIC = b"customization:\n  extraKernelArgs:\n    - console=ttyS1\n"
BAD_SCHEMATIC = b"customization:\n  extraKernelArgs:\n    - ok\n  systemExtension: {}\n"


def tiny_factory(
    sample_release: Path, config: Path, *, schematics: str, store: Path, public: Path
) -> None:
    """A pipeline config (and its lock) on the sample release with a tiny matrix: one version,
    metal amd64, kernel and cmdline."""
    sample = yaml.safe_load(sample_release.read_text())
    sources = sample["sources"]  # its paths are relative to the sample's config: made absolute
    layout = sources["registry"].removeprefix("oci-layout:")
    sources["registry"] = f"oci-layout:{sample_release.parent / layout}"
    sources["verify"]["publicKey"] = str(sample_release.parent / sources["verify"]["publicKey"])
    settings = {
        "sources": sources,
        "versions": sample["versions"],
        "schematics": schematics,
        "store": str(store),
        "public": str(public),
        "targets": {
            "versions": [VERSION],
            "platforms": [
                {"platform": "metal", "archs": ["amd64"], "assets": ["kernel", "cmdline"]}
            ],
        },
        "publish": {"signingKeyPath": str(sample_release.parent / "cosign.key")},
    }
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    imagefactory = REPO / ".venv" / "bin" / "imagefactory"
    subprocess.run(
        [str(imagefactory), "lock", "--config", str(config)], check=True, capture_output=True
    )


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=check, timeout=900
    )


@pytest.fixture
def factory(
    sample_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """A bare repository with the hooks, and a clone holding a config, its lock and one schematic."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no user or system git config leaks in
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var, value in {"NAME": "Factory Test", "EMAIL": "factory@test.invalid"}.items():
        monkeypatch.setenv(f"GIT_AUTHOR_{var}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{var}", value)
    bare = tmp_path / "factory.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    for hook in ("pre-receive", "post-receive", "imagefactory-common.sh"):
        (bare / "hooks" / hook).symlink_to(HOOKS / hook)
    git(bare, "config", "imagefactory.code", str(REPO))

    client = tmp_path / "client"
    (client / "schematics").mkdir(parents=True)
    tiny_factory(
        sample_release,
        client / "config" / "config.yaml",
        schematics="../schematics",
        store=tmp_path / "store",  # outside the checkout: kept from push to push
        public=tmp_path / "public",
    )
    shutil.copy(REPO / "schematics" / "vanilla.yaml", client / "schematics" / "vanilla.yaml")
    git(tmp_path, "init", "-q", "-b", "main", str(client))
    git(client, "remote", "add", "origin", str(bare))
    return {"bare": bare, "client": client, "public": tmp_path / "public", "base": tmp_path}


def commit_and_push(client: Path, message: str) -> subprocess.CompletedProcess[str]:
    git(client, "add", "-A")
    git(client, "commit", "-q", "-m", message)
    return git(client, "push", "origin", "main", check=False)


def published(public: Path, schematic_id: str, name: str) -> Path:
    return public / tree.image_path(schematic_id, VERSION, name)


def snapshot(public: Path) -> dict[str, bytes]:
    root = public.resolve()
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_push_publishes_and_a_bad_schematic_is_refused(factory: dict[str, Path]) -> None:
    client, public, bare = factory["client"], factory["public"], factory["bare"]
    first = commit_and_push(client, "vanilla")
    assert first.returncode == 0, first.stderr
    assert "imagefactory: published" in first.stderr  # the hook's output reaches the pusher
    assert published(public, VANILLA, "kernel-amd64").is_file()

    # A new schematic: its cell is built and published beside the first one.
    (client / "schematics" / "serial.yaml").write_bytes(NEW_SCHEMATIC)
    new_id = parse_schematic(NEW_SCHEMATIC).id
    second = commit_and_push(client, "add a schematic with a serial console")
    assert second.returncode == 0, second.stderr
    cmdline = published(public, new_id, "cmdline-metal-amd64").read_text()
    assert "console=ttyS1" in cmdline.split()
    assert published(public, new_id, "kernel-amd64").is_file()
    assert published(public, VANILLA, "kernel-amd64").is_file()
    generation = public.resolve()
    before = snapshot(public)
    head = git(bare, "rev-parse", "main").stdout

    # An invalid schematic: refused before any ref moves, with the validator's message.
    (client / "schematics" / "broken.yaml").write_bytes(BAD_SCHEMATIC)
    third = commit_and_push(client, "a broken schematic")
    assert third.returncode != 0
    assert "pre-receive hook declined" in third.stderr
    message = [line for line in third.stderr.splitlines() if "broken.yaml" in line]
    assert message, third.stderr
    assert "systemExtension" in message[0] and "line 4" in message[0], message
    assert "/tmp" not in message[0]  # the pusher's path, not the hook's temporary copy
    assert git(bare, "rev-parse", "main").stdout == head
    assert public.resolve() == generation
    assert snapshot(public) == before


def test_hooks_refuse_to_run_without_the_code_setting(factory: dict[str, Path]) -> None:
    git(factory["bare"], "config", "--unset", "imagefactory.code")
    pushed = commit_and_push(factory["client"], "vanilla")
    assert pushed.returncode != 0
    assert "set imagefactory.code" in pushed.stderr
    assert not factory["public"].exists()


def test_other_branches_are_not_built(factory: dict[str, Path]) -> None:
    client = factory["client"]
    git(client, "checkout", "-q", "-b", "draft")
    (client / "schematics" / "broken.yaml").write_bytes(BAD_SCHEMATIC)
    git(client, "add", "-A")
    git(client, "commit", "-q", "-m", "work in progress")
    pushed = git(client, "push", "origin", "draft", check=False)
    assert pushed.returncode == 0, pushed.stderr
    assert not factory["public"].exists()
    assert os.listdir(factory["bare"] / "refs" / "heads") == ["draft"]
