"""A real `imagefactory serve` per test module (see serving.py); stopped and checked at the end."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import Served, check_clean_stop, start_server


@pytest.fixture(scope="module")
def server_factory(
    sample_release: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Served]]:
    """Start servers with extra `server:` settings; each is stopped (and checked) at module end."""
    started: list[Served] = []

    def start(**settings: Any) -> Served:
        served = start_server(sample_release, tmp_path_factory.mktemp("served"), **settings)
        started.append(served)
        return served

    yield start
    for served in started:
        check_clean_stop(served)


@pytest.fixture(scope="module")
def served(server_factory: Callable[..., Served]) -> Served:
    return server_factory()
