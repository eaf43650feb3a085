"""Browser tests: the published tree fixture, served on 127.0.0.1, and one headless chromium."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagefactory.cli import main
from imagefactory.schematic import Schematic
from tests.browser.cdp import Page, chromium
from tests.browser.tree_fixture import build_tree

REPO = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"


@dataclass(frozen=True)
class Site:
    config: Path
    root: Path
    url: str
    schematics: dict[str, Schematic]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def site(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    where = tmp_path_factory.mktemp("webui")
    config, root, schematics = build_tree(sample_release, where)
    assert main(["site", "render", "--config", str(config), "--out", str(root)]) == 0
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(config, root, f"http://127.0.0.1:{server.server_address[1]}/", schematics)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as page:
        yield page


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
