"""Decompressing a layer by streaming it through a tool: `zstd` (Python 3.11 has none) or `pigz`.

Gzip goes through pigz too, although Python could inflate it: in its own process the inflate runs
beside our tar parsing and file writes instead of before them (unpacking the imager is most of a
cold build's own time). The layer never sits in memory whole; both tools check the stream's own
checksum as they go, and the compressed blob's digest was checked before this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, BinaryIO

from imagefactory import tools
from imagefactory.errors import BuildError, ToolError
from imagefactory.oci import media

_TOOLS = {
    media.OCI_LAYER_ZSTD: ("zstd", ["--decompress", "--stdout", "--quiet"]),
    media.OCI_LAYER_GZIP: ("pigz", ["--decompress", "--stdout"]),
    media.DOCKER_LAYER_GZIP: ("pigz", ["--decompress", "--stdout"]),
}


@contextlib.contextmanager
def decompressed(source: IO[bytes], media_type: str, what: str) -> Iterator[BinaryIO]:
    """The layer tar of `source` (a real file) as a stream; failures name `what`."""
    if media_type not in _TOOLS:  # an uncompressed tar
        yield source  # type: ignore[misc]
        return
    tool, args = _TOOLS[media_type]
    try:
        with tools.stream([tools.require(tool), *args], stdin=source) as out:
            yield out
    except ToolError as exc:
        raise BuildError(f"{what}: cannot decompress {tool} layer: {exc}") from exc
