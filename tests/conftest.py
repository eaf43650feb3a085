"""Shared pytest set-up: hypothesis profiles and the repository root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from imagefactory.oci.build import push_image
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile(
    "dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# bench/mutation.py runs the fast tests once per mutant: a small, fixed set of examples each, so a
# whole module's mutants fit a run (the exact-bytes tests carry most kills there).
settings.register_profile(
    "mutation", max_examples=10, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
settings.load_profile(
    os.environ.get("IMAGEFACTORY_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


if os.environ.get("IMAGEFACTORY_HYPOTHESIS_PROFILE") == "mutation":

    @pytest.fixture(autouse=True)
    def _fresh_emitter_caches() -> None:
        """mutmut forks each mutant's test run from a process that already ran the suite, so the
        emitter's memoised scalar plans would answer from unmutated code; start each test empty."""
        from imagefactory import goyaml

        goyaml._plan.cache_clear()
        goyaml._analyze.cache_clear()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sample_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample release (one version each side of the 1.10 bootloader/usr-merge line), locked.

    Returns its config.yaml; tests that build copy it and point `store` somewhere of their own.
    """
    from imagefactory.cli import main

    out = tmp_path_factory.mktemp("sample-release")
    assert main(["sample-release", "--out", str(out), "--versions", "v1.7.7,v1.11.5"]) == 0
    assert main(["lock", "--config", str(out / "config.yaml")]) == 0
    return out / "config.yaml"


@pytest.fixture
def layout(tmp_path: Path) -> LayoutTarget:
    """An empty OCI layout to push test images into."""
    return LayoutTarget(tmp_path / "layout")


@pytest.fixture
def image(tmp_path: Path, layout: LayoutTarget) -> Descriptor:
    """A one-file amd64 image pushed into `layout` as siderolabs/imager:v1."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "hello").write_text("hello\n")
    return push_image(layout, "siderolabs/imager", "v1", {"amd64": [tree]})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """In CI a skip is a failure: scripts/setup installs every tool, so a skip is lost coverage.

    Only tests marked `may_skip` (a verifier downloaded from outside the project) may skip there.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI") and item.get_closest_marker("may_skip") is None:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every tool is installed: {report.longrepr}"
    return None
