"""Catalog files of the sample release, read back with the factory's own catalog parsers."""

from __future__ import annotations

import re

import yaml
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.catalogs import parse_extensions, parse_overlays
from imagefactory.sample.catalogs import (
    LAYOUT_ORIGIN,
    CatalogImage,
    CatalogOverlay,
    descriptions_yaml,
    image_digests,
    overlays_yaml,
)

LINE_RE = re.compile(
    r"^(?P<origin>[a-z0-9.:-]+)/(?P<repo>siderolabs/[a-z0-9-]+):(?P<tag>[\w.-]+)"
    r"@sha256:[0-9a-f]{64}$"
)

IMAGES = [
    CatalogImage(
        "siderolabs/iscsi-tools", "v0.1.6", "sha256:" + "a" * 64, "Sidero Labs", "iSCSI: tools"
    ),
    CatalogImage("siderolabs/gvisor", "20240826.0", "sha256:" + "b" * 64, "A", "gVisor 'runsc'"),
]


def test_image_digests_lines() -> None:
    text = image_digests(LAYOUT_ORIGIN, IMAGES)
    lines = text.splitlines()
    assert text.endswith("\n")
    assert lines == sorted(lines)
    assert [LINE_RE.match(line) is not None for line in lines] == [True, True]
    assert lines[0] == ("registry.sample.invalid/siderolabs/gvisor:20240826.0@sha256:" + "b" * 64)


def test_descriptions_keyed_by_full_line_with_plain_keys() -> None:
    text = descriptions_yaml("127.0.0.1:5000", IMAGES)
    table = yaml.safe_load(text)
    assert set(table) == set(image_digests("127.0.0.1:5000", IMAGES).splitlines())
    assert table[IMAGES[0].line("127.0.0.1:5000")] == {
        "author": "Sidero Labs",
        "description": "iSCSI: tools",
    }
    # Long keys stay plain block keys, as upstream writes them, not `? ` complex keys.
    assert not any(line.startswith("?") for line in text.splitlines())


def test_factory_parser_reads_the_extensions_catalog() -> None:
    entries = parse_extensions(
        image_digests(LAYOUT_ORIGIN, IMAGES), descriptions_yaml(LAYOUT_ORIGIN, IMAGES)
    )
    by_name = {entry.name: entry for entry in entries}
    assert set(by_name) == {"siderolabs/iscsi-tools", "siderolabs/gvisor"}
    iscsi = by_name["siderolabs/iscsi-tools"]
    assert iscsi.image.registry == LAYOUT_ORIGIN
    assert iscsi.image.tag == "v0.1.6"
    assert iscsi.image.digest == "sha256:" + "a" * 64
    assert (iscsi.author, iscsi.description) == ("Sidero Labs", "iSCSI: tools")


def test_overlays_yaml_shape_and_factory_parser() -> None:
    overlay = CatalogOverlay(
        "rpi_generic",
        CatalogImage("siderolabs/sbc-raspberrypi", "v0.1.0", "sha256:" + "c" * 64),
    )
    text = overlays_yaml("127.0.0.1:5000", [overlay])
    assert yaml.safe_load(text) == {
        "overlays": [
            {
                "name": "rpi_generic",
                "image": "127.0.0.1:5000/siderolabs/sbc-raspberrypi:v0.1.0",
                "digest": "sha256:" + "c" * 64,
            }
        ]
    }
    (entry,) = parse_overlays(text)
    assert entry.name == "rpi_generic"
    assert entry.image.repository == "siderolabs/sbc-raspberrypi"
    assert entry.image.digest == "sha256:" + "c" * 64


names = st.from_regex(r"[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,6}){0,2}", fullmatch=True)
tags = st.from_regex(r"v?[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,3})?(-[a-z0-9]{1,5})?", fullmatch=True)
digests = st.from_regex(r"[0-9a-f]{64}", fullmatch=True).map(lambda h: f"sha256:{h}")
free_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)


@given(
    st.lists(
        st.builds(
            CatalogImage,
            names.map(lambda n: f"siderolabs/{n}"),
            tags,
            digests,
            free_text,
            free_text,
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda i: i.repository,
    )
)
def test_catalog_round_trip(images: list[CatalogImage]) -> None:
    lines = image_digests(LAYOUT_ORIGIN, images).splitlines()
    assert all(LINE_RE.match(line) for line in lines)
    table = yaml.safe_load(descriptions_yaml(LAYOUT_ORIGIN, images))
    for image in images:
        assert table[image.line(LAYOUT_ORIGIN)] == {
            "author": image.author,
            "description": image.description,
        }
