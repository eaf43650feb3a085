"""Decompressing a zstd layer by streaming it through the `zstd` tool (Python 3.11 has no zstd).

The layer never sits in memory whole; zstd checks its own frame checksum as it goes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, BinaryIO

from imagefactory import tools
from imagefactory.errors import BuildError, ToolError


@contextlib.contextmanager
def decompressed(source: IO[bytes], what: str) -> Iterator[BinaryIO]:
    """The decompressed bytes of `source` (a real file) as a stream; failures name `what`."""
    argv = [tools.require("zstd"), "--decompress", "--stdout", "--quiet"]
    try:
        with tools.stream(argv, stdin=source) as out:
            yield out
    except ToolError as exc:
        raise BuildError(f"{what}: cannot decompress zstd layer: {exc}") from exc
