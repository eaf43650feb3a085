"""Property tests: the CLI entry points fed generated garbage (schematics, configs, locks, asset
paths, versions) exit 0, 1 or 2 with at most one plain line, quickly and in bounded memory.

In-process for speed; the subprocess corpus (test_hostile_inputs.py) bounds memory with RLIMIT_AS,
here the peak of what the call itself allocates is traced (the test process's own RSS high-water
mark says more about the tests that ran before than about this call).
"""

from __future__ import annotations

import contextlib
import io
import json
import tracemalloc
from pathlib import Path

import pytest
import yaml
from build_helpers import private_config, write_schematic
from hostile_cli import FORBIDDEN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagefactory.cli import main

PEAK_HEAP_BYTES = 256 * 1024 * 1024
FUZZ = settings(
    max_examples=60,
    deadline=10_000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    tracemalloc.start()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse
                code = int(exc.code or 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = err.getvalue()
    assert code in (0, 1, 2), text
    for word in FORBIDDEN:
        assert word not in text, text
    assert len([line for line in text.splitlines() if "warning:" not in line]) <= 1, text
    assert peak < PEAK_HEAP_BYTES, f"{argv}: {peak} bytes allocated at peak"
    return code, text


scalars = st.one_of(
    st.text(max_size=30), st.integers(), st.booleans(), st.none(),
    st.floats(allow_nan=True), st.sampled_from(["*a", "&a x", "<<", "!!binary", "0x_1", "1e400"]),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["customization", "overlay", "meta", "key", "value",
                                       "extraKernelArgs", "systemExtensions", "x", "<<"]),
                      inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


def as_yaml(value: object, flow: bool) -> bytes:
    return yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True).encode()


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.builds(as_yaml, documents, st.booleans()),
        st.builds(
            lambda doc, cut, junk: as_yaml(doc, False)[:cut] + junk,
            documents, st.integers(0, 200), st.sampled_from([b"", b"&a", b" *a", b"\x85", b"\t", b"\x00"]),
        ),
    )
)  # fmt: skip
def test_schematic_garbage(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(body)
    run(["schematic", "id", str(path)])


@FUZZ
@given(document=documents, flow=st.booleans())
def test_config_garbage(tmp_path: Path, document: object, flow: bool) -> None:
    path = tmp_path / "config.yaml"
    good = {
        "sources": {"registry": f"oci-layout:{tmp_path}/none", "verify": {"disabled": True}},
        "versions": {"list": ["v1.11.5"]},
    }
    if isinstance(document, dict):
        good.update(document)
        document = good
    path.write_bytes(as_yaml(document, flow))
    run(["versions", "--config", str(path)])


@pytest.fixture(scope="module")
def site(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("fuzz-site")
    return private_config(sample_release, base / "site"), write_schematic(base)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=15,
)


@FUZZ
@given(
    edit=st.tuples(
        st.sampled_from(["lockFormat", "source", "versions", "imager", "installer", "extensions",
                         "overlays", "digest", "repository"]),
        json_values,
    )
)  # fmt: skip
def test_lock_garbage(site: tuple[Path, Path], edit: tuple[str, object]) -> None:
    config, _ = site
    lock_path = config.parent / "sources.lock.json"
    original = lock_path.read_text()
    lock = json.loads(original)
    key, value = edit

    def poke(node: object) -> None:
        if isinstance(node, dict):
            for name in list(node):
                if name == key:
                    node[name] = value
                else:
                    poke(node[name])

    poke(lock)
    lock_path.write_text(json.dumps(lock))
    try:
        run(["versions", "--config", str(config)])
        run(["extensions", "v1.11.5", "--config", str(config)])
    finally:
        lock_path.write_text(original)


@FUZZ
@given(
    asset=st.one_of(st.text(max_size=60), st.sampled_from(["kernel-amd64", "cmdline-metal-amd64",
                    "metal-amd64.iso/", "../x", ".", "kernel-arm64\x00"])),
    version=st.one_of(st.text(max_size=30), st.sampled_from(["v1.11.5", "1.11.5", "v1.7.7",
                      "v99.0.0", "v1.11.5-alpha.0", "v" + "9" * 50 + ".0.0"])),
)  # fmt: skip
def test_build_arguments_garbage(
    site: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory, asset: str, version: str
) -> None:
    config, schematic = site
    out = tmp_path_factory.mktemp("out")
    argv = ["build", "--config", str(config), "--schematic", str(schematic)]
    if "\x00" in asset or "\x00" in version:
        return  # the OS never passes NUL in argv
    code, _ = run([*argv, "--version", version, "--asset", asset, "--out", str(out)])
    if code != 0:
        assert list(out.iterdir()) == []
