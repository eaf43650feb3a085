"""Size units, declared once."""

from __future__ import annotations

MIB = 1024 * 1024
