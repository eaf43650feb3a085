"""Style is part of passing: ruff (check and format) and mypy --strict on the shipped code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPED_PACKAGES = [p for p in ("imagefactory", "server") if (ROOT / p).is_dir()]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("mypy", "--strict", *TYPED_PACKAGES),
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_linter(argv: tuple[str, ...]) -> None:
    result = _run(*argv)
    assert result.returncode == 0, result.stdout + result.stderr
