"""Boot tests: every test here is marked `boot`; the shared asset helpers live one level up.

Each test boots under qemu TCG and stops as soon as the marker or a failure shows on the console.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.boot)
