"""The hostile-input corpus: schematics, configs and locks a careless or malicious user could give.

Each case runs the CLI in a subprocess bounded in memory (RLIMIT_AS) and time, and must exit with
the expected code and one plain line naming the problem, never a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from build_helpers import private_config
from hostile_cli import run_cli

GOOD_SCHEMATIC = b"customization:\n  extraKernelArgs: [console=ttyS0]\n"
# Seconds a refused input may take, subprocess start included (a slow CI machine, two cores shared).
QUICK = 15.0


def amplified(value_bytes: int, aliases: int) -> bytes:
    """One anchored string of `value_bytes` and `aliases` aliases of it (issue: 2 GB for 140 KB)."""
    head = b"customization:\n  extraKernelArgs:\n    - &a " + b"a" * value_bytes + b"\n"
    return head + b"    - *a\n" * aliases


def laughs() -> bytes:
    lines = [b"a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        prev = f"*a{i - 1}".encode()
        lines.append(f"a{i}: &a{i} [".encode() + b", ".join([prev] * 9) + b"]")
    return b"\n".join(lines) + b"\ncustomization: {extraKernelArgs: *a9}\n"


def merge_bomb() -> bytes:
    lines = [b"m0: &m0 {a: 1, b: 2}"]
    for i in range(1, 25):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}".encode())
    return b"\n".join(lines) + b"\n"


SCHEMATIC_FILES: dict[str, tuple[bytes, int]] = {
    "amplified 140 KB": (amplified(100_000, 10_000), 2),
    "amplified 980 KB": (amplified(900_000, 20_000), 2),
    "billion laughs": (laughs(), 2),
    "merge-key bomb": (merge_bomb(), 2),
    "100k-deep flow": (b"[" * 100_000, 2),
    "100k-deep block": (b"".join(b"  " * i + b"- \n" for i in range(3000)), 2),
    "deep alias chain": (
        b"".join(
            f"a{i}: &a{i} [[[[[[[[[*a{i - 1}]]]]]]]]]\n".encode() for i in range(1, 400)
        ).replace(b"*a0", b"x"),
        2,
    ),
    "self alias": (b"a: &a [*a]\n", 2),
    "NUL bytes": (b"customization:\x00\n", 2),
    "invalid UTF-8": (b"customization: {extraKernelArgs: [\xff\xfe]}\n", 2),
    "UTF-16 garbage": (b"\xff\xfe" + "customization: {}".encode("utf-16-le") + b"\xd8", 2),
    "complex key": (b"? [a, b]\n: c\n", 2),
    "unknown field": (b"colour: blue\n", 2),
    "owner": (b"owner: me\n", 2),
    "huge int meta key": (b"customization: {meta: [{key: " + b"9" * 5000 + b", value: x}]}\n", 2),
    "tabs": (b"customization:\n\t- a\n", 2),
    "many documents": (b"customization: {}\n---\n" * 20_000, 0),
    "line separators": ("customization: {extraKernelArgs: ['a\u2028b\u2029c']}\n".encode(), 0),
    "good": (GOOD_SCHEMATIC, 0),
}


@pytest.mark.parametrize("name", SCHEMATIC_FILES)
def test_schematic_file(tmp_path: Path, name: str) -> None:
    data, expected = SCHEMATIC_FILES[name]
    path = tmp_path / "schematic.yaml"
    path.write_bytes(data)
    outcome = run_cli("schematic", "id", path, timeout=60)
    assert outcome.code == expected, outcome
    assert outcome.seconds < QUICK, outcome.seconds
    if expected:
        assert str(path) in outcome.stderr or "<stdin>" in outcome.stderr


def test_schematic_on_stdin_is_bounded() -> None:
    outcome = run_cli("schematic", "id", "-", stdin=amplified(100_000, 10_000))
    assert outcome.code == 2
    assert "aliases expand the document beyond" in outcome.stderr


def test_produced_bytes_bound_is_configurable(tmp_path: Path) -> None:
    """A user with a large embedded machine config raises the bound; expansion follows it."""
    path = tmp_path / "big.yaml"
    path.write_bytes(amplified(100_000, 15))  # 1.6 MB once expanded
    assert run_cli("schematic", "id", path).code == 2
    env = {"IMAGEFACTORY_MAX_SCHEMATIC_BYTES": str(4 << 20)}
    assert run_cli("schematic", "id", path, env=env).code == 0
    assert run_cli("schematic", "id", path, env={"IMAGEFACTORY_MAX_SCHEMATIC_BYTES": "x"}).code == 2


def _special_paths(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(50 << 20)  # sparse: 50 MB without the disk
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "file").write_bytes(b"x")
    return {
        "fifo": fifo,
        "50 MB": big,
        "directory": tmp_path / "dir.yaml",
        "dangling symlink": tmp_path / "dangling.yaml",
        "symlink to /dev/zero": tmp_path / "zero.yaml",
        "/dev/zero": Path("/dev/zero"),
        "/dev/null": Path("/dev/null"),
        "under a file": tmp_path / "file" / "x.yaml",
        "missing": tmp_path / "missing.yaml",
        "too long": tmp_path / ("x" * 300),
        "loop": tmp_path / "loop.yaml",
    }


SPECIAL = [
    "fifo", "50 MB", "directory", "dangling symlink", "symlink to /dev/zero", "/dev/zero",
    "/dev/null", "under a file", "missing", "too long", "loop",
]  # fmt: skip


@pytest.mark.parametrize("kind", SPECIAL)
def test_schematic_special_files(tmp_path: Path, kind: str) -> None:
    paths = _special_paths(tmp_path)
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    outcome = run_cli("schematic", "id", paths[kind], timeout=30)
    assert outcome.code == 2, outcome
    assert outcome.seconds < QUICK


@pytest.mark.parametrize("kind", SPECIAL)
def test_config_special_files(tmp_path: Path, kind: str) -> None:
    paths = _special_paths(tmp_path)
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    outcome = run_cli("versions", "--config", paths[kind], timeout=30)
    assert outcome.code == 2, outcome
    assert outcome.seconds < QUICK


CONFIG_HEAD = "sources:\n  registry: {registry}\n  verify: {{disabled: true}}\nversions: {{list: [v1.11.5]}}\n"
BAD_CONFIGS: dict[str, tuple[str, str]] = {
    "alias bomb": (
        CONFIG_HEAD.format(registry="ghcr.io")
        + "".join(
            f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}" if i else "'lol'"] * 10) + "]\n"
            for i in range(12)
        ),
        "aliases expand the document beyond",
    ),
    "5000-deep list": (CONFIG_HEAD.format(registry="ghcr.io") + "x: " + "[" * 5000, "nesting"),
    "registry with scheme": (
        CONFIG_HEAD.format(registry="https://ghcr.io"),
        "line 2: sources.registry",
    ),
    "registry with path": (
        CONFIG_HEAD.format(registry="ghcr.io/siderolabs"),
        "line 2: sources.registry",
    ),
    "empty layout": (CONFIG_HEAD.format(registry="'oci-layout:'"), "line 2: sources.registry"),
    "minimum banana": (
        CONFIG_HEAD.format(registry="ghcr.io").replace("{list: [v1.11.5]}", "{minimum: banana}"),
        "line 4: versions.minimum",
    ),
    "complex key": (CONFIG_HEAD.format(registry="ghcr.io") + "? [a]\n: b\n", "line 5:"),
    "5000-digit number": (
        CONFIG_HEAD.format(registry="ghcr.io") + "store: " + "9" * 5000 + "\n",
        "line 5",
    ),
    "python tag": (CONFIG_HEAD.format(registry="!!python/object:os.system ghcr.io"), "unknown tag"),
    "list at top": ("- a\n", "(top level)"),
    "null": ("null\n", "(top level)"),
}


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_bad_config(tmp_path: Path, name: str) -> None:
    text, message = BAD_CONFIGS[name]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    outcome = run_cli("versions", "--config", path)
    assert outcome.code == 2, outcome
    assert message in outcome.stderr
    assert str(path) in outcome.stderr
    assert outcome.seconds < QUICK


def test_bare_registry_never_becomes_a_local_directory(tmp_path: Path) -> None:
    """`registry: ghcr.io` is a host even where the working directory has a `ghcr.io/` folder."""
    from imagefactory.config import load_config

    (tmp_path / "ghcr.io").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG_HEAD.format(registry="ghcr.io"))
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        config = load_config(path)
    finally:
        os.chdir(cwd)
    assert config.sources.registry == "ghcr.io"
    assert config.sources.layout_path is None
    path.write_text(CONFIG_HEAD.format(registry="oci-layout:ghcr.io"))
    assert load_config(path).sources.layout_path == tmp_path / "ghcr.io"


# ---- locks -------------------------------------------------------------------------------------


def _lock_cases(good: dict[str, object]) -> dict[str, Callable[[Path], None]]:
    def text(value: str) -> Callable[[Path], None]:
        return lambda path: path.write_text(value)

    def data(value: object) -> Callable[[Path], None]:
        return lambda path: path.write_text(json.dumps(value))

    def edited(edit: Callable[[dict[str, object]], None]) -> Callable[[Path], None]:
        copy = json.loads(json.dumps(good))
        edit(copy)
        return data(copy)

    version = next(iter(good["versions"]))  # type: ignore[call-overload]

    def set_entry(key: str, value: object) -> Callable[[dict[str, object]], None]:
        return lambda lock: lock["versions"][version].__setitem__(key, value)  # type: ignore[index]

    return {
        "empty list": text("[]"),
        "null": text("null"),
        "empty object": text("{}"),
        "not JSON": text("{"),
        "no versions": edited(lambda lock: lock.pop("versions")),
        "versions a list": edited(lambda lock: lock.__setitem__("versions", [])),
        "entry a string": edited(lambda lock: lock["versions"].__setitem__(version, "x")),  # type: ignore[attr-defined]
        "imager null": edited(set_entry("imager", None)),
        "digest a number": edited(set_entry("imager", {"repository": "a", "digest": 1})),
        "bad digest": edited(set_entry("imager", {"repository": "a", "digest": "sha256:zz"})),
        "extensions a list": edited(set_entry("extensions", [])),
        "5000-digit version": edited(
            lambda lock: lock["versions"].__setitem__("v" + "9" * 5000 + ".0.0", {})  # type: ignore[attr-defined]
        ),
        "5000-digit number": text('{"lockFormat": ' + "9" * 5000 + "}"),
        "deeply nested": text("[" * 100_000 + "]" * 100_000),
        "directory": lambda path: path.mkdir(),
        "symlink to /dev/zero": lambda path: path.symlink_to("/dev/zero"),
        "fifo": os.mkfifo,
        "huge": lambda path: path.write_bytes(b" " * (65 << 20)),
    }


LOCK_CASES = [
    "empty list", "null", "empty object", "not JSON", "no versions", "versions a list",
    "entry a string", "imager null", "digest a number", "bad digest", "extensions a list",
    "5000-digit version", "5000-digit number", "deeply nested", "directory",
    "symlink to /dev/zero", "fifo", "huge",
]  # fmt: skip


@pytest.mark.parametrize("case", LOCK_CASES)
def test_bad_lock(sample_release: Path, tmp_path: Path, case: str) -> None:
    config = private_config(sample_release, tmp_path / "site")
    lock = config.parent / "sources.lock.json"
    good = json.loads(lock.read_text())
    lock.unlink()
    _lock_cases(good)[case](lock)
    for argv in (["versions"], ["extensions", "v1.11.5"]):
        outcome = run_cli(*argv, "--config", config, timeout=30)
        assert outcome.code == 2, outcome
        assert str(lock) in outcome.stderr
        assert outcome.seconds < QUICK


def test_good_lock_still_reads(sample_release: Path, tmp_path: Path) -> None:
    config = private_config(sample_release, tmp_path / "site")
    outcome = run_cli("versions", "--config", config)
    assert outcome.code == 0, outcome
    assert b"v1.11.5" in outcome.stdout


def test_config_yaml_config_keeps_yaml_1_1_scalars(tmp_path: Path) -> None:
    from imagefactory.config import load_config

    path = tmp_path / "config.yaml"
    document = yaml.safe_load(CONFIG_HEAD.format(registry="ghcr.io"))
    document["sources"]["insecure"] = "yes"
    path.write_text(yaml.safe_dump(document).replace("'yes'", "yes"))
    assert load_config(path).sources.insecure is True
