"""The layers hold: the core library never imports what sits on top of it.

`server/`, the workflow and the web UI call `imagefactory`; `imagefactory` imports none of them, so the
core runs (and is tested) without Twisted, Snakemake or a browser.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UPPER_LAYERS = ("server", "twisted")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _core_files() -> list[Path]:
    # The `serve` command is the one door from the CLI into the server, and it opens lazily.
    return [
        path
        for path in sorted((ROOT / "imagefactory").rglob("*.py"))
        if path.name != "serve_cmd.py"
    ]


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_upper_layer(path: Path) -> None:
    offending = [
        f"line {line}: {module}"
        for line, module in _imported_modules(path)
        if module.split(".")[0] in UPPER_LAYERS
    ]
    assert offending == []


def test_serve_command_imports_the_server_only_when_run() -> None:
    serve = ROOT / "imagefactory" / "commands" / "serve_cmd.py"
    if not serve.exists():
        pytest.fail("the serve command is missing")
    tree = ast.parse(serve.read_text())
    top_level = [
        node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert not [m for m in top_level if m and m.split(".")[0] in UPPER_LAYERS]


def test_the_checker_sees_an_upper_layer_import(tmp_path: Path) -> None:
    planted = tmp_path / "bad.py"
    planted.write_text("import os\nfrom server.http import site\nimport twisted.internet\n")
    modules = [m for _, m in _imported_modules(planted)]
    assert [m for m in modules if m.split(".")[0] in UPPER_LAYERS] == [
        "server.http",
        "twisted.internet",
    ]
