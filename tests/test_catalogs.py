"""Catalog parsing: upstream's image-digests, descriptions.yaml and overlays.yaml formats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.catalogs import (
    ImageLine,
    parse_extensions,
    parse_overlays,
    resolve_extension_name,
)
from imagefactory.errors import InvalidInput

DIGEST = "sha256:" + "ab" * 32
LINES = f"""\
ghcr.io/siderolabs/amd-ucode:20230804@{DIGEST}
ghcr.io/siderolabs/gvisor:20231214.0-v1.9.6@{DIGEST.replace("ab", "cd")}
this line has no digest and is skipped
"""
DESCRIPTIONS = f"""\
ghcr.io/siderolabs/amd-ucode:20230804@{DIGEST}:
  author: Sidero Labs
  description: AMD CPU microcode
"""


def test_extensions_take_names_from_the_repository_path() -> None:
    entries = parse_extensions(LINES, DESCRIPTIONS)
    assert [e.name for e in entries] == ["siderolabs/amd-ucode", "siderolabs/gvisor"]
    assert entries[0].ref == "ghcr.io/siderolabs/amd-ucode:20230804"
    assert entries[0].image.digest == DIGEST
    assert (entries[0].author, entries[0].description) == ("Sidero Labs", "AMD CPU microcode")
    assert (entries[1].author, entries[1].description) == ("", "")


def test_registry_with_port_keeps_its_tag() -> None:
    line = ImageLine.parse(f"127.0.0.1:5000/mirror/siderolabs/x:v1@{DIGEST}", what="t")
    assert (line.registry, line.repository, line.tag) == (
        "127.0.0.1:5000",
        "mirror/siderolabs/x",
        "v1",
    )


def test_overlays() -> None:
    text = (
        "overlays:\n  - name: rpi_generic\n"
        f"    image: ghcr.io/siderolabs/sbc-raspberrypi:v0.1.0\n    digest: {DIGEST}\n"
    )
    (entry,) = parse_overlays(text)
    assert entry.name == "rpi_generic"
    assert entry.image.repository == "siderolabs/sbc-raspberrypi"
    assert entry.ref == "ghcr.io/siderolabs/sbc-raspberrypi:v0.1.0"


def test_aliases() -> None:
    assert resolve_extension_name("siderolabs/i915-ucode") == "siderolabs/i915"
    assert resolve_extension_name("siderolabs/iscsi-tools") == "siderolabs/iscsi-tools"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_extensions("", None), "no extension references"),
        (lambda: parse_extensions(f"ghcr.io/x@{DIGEST}", None), "not a tagged image reference"),
        (lambda: parse_extensions("ghcr.io/x:1@sha256:zz", None), "bad digest"),
        (lambda: parse_extensions(LINES, "- a list"), "expected a map"),
        (lambda: parse_overlays("overlays: 3"), "expected `overlays:`"),
        (lambda: parse_overlays("overlays:\n  - name: x\n"), "needs name, image and digest"),
        (lambda: parse_overlays("overlays: [\n"), "not valid YAML"),
    ],
)
def test_bad_catalogs(call: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call()  # type: ignore[operator]


segment = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?", fullmatch=True)


@given(
    registry=st.sampled_from(["ghcr.io", "127.0.0.1:5000", "registry.local"]),
    parts=st.lists(segment, min_size=1, max_size=4),
    tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)
def test_image_line_round_trip(registry: str, parts: list[str], tag: str) -> None:
    text = f"{registry}/{'/'.join(parts)}:{tag}@{DIGEST}"
    line = ImageLine.parse(text, what="t")
    assert f"{line.registry}/{line.repository}:{line.tag}@{line.digest}" == text
