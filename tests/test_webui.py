"""imagefactory.webui without a browser: the schematic's JSON form, version groups, UI assets."""

from __future__ import annotations

import json

from imagefactory.platforms import get_platform
from imagefactory.schematic import parse_schematic
from imagefactory.versions import TalosVersion
from imagefactory.webui import (
    default_version,
    minor_groups,
    mirror_snippet,
    schematic_json,
    ui_assets,
)
from tests.test_schematic_js import Generator, to_json


def test_schematic_json_round_trips_to_the_same_id() -> None:
    gen = Generator(7)
    for _ in range(2000):
        schematic = parse_schematic(to_json(gen.schematic()).encode())
        again = parse_schematic(to_json(schematic_json(schematic)).encode())
        assert again.canonical() == schematic.canonical()


def test_schematic_json_uses_upstream_names() -> None:
    text = (
        b"overlay: {image: siderolabs/sbc-raspberrypi, name: rpi_generic, options: {a: 1}}\n"
        b"customization:\n  meta: [{key: 0xa, value: x}]\n  bootloader: sd-boot\n"
        b"  secureboot: {includeWellKnownCertificates: true}\n  diskImage: {sectorSize: 4096}\n"
    )
    assert schematic_json(parse_schematic(text)) == {
        "overlay": {
            "image": "siderolabs/sbc-raspberrypi",
            "name": "rpi_generic",
            "options": {"a": 1},
        },
        "customization": {
            "meta": [{"key": 10, "value": "x"}],
            "bootloader": "sd-boot",
            "secureboot": {"includeWellKnownCertificates": True},
            "diskImage": {"sectorSize": 4096},
        },
    }
    assert json.dumps(schematic_json(parse_schematic(b"{}"))) == '{"customization": {}}'


def test_versions_grouped_by_minor_newest_stable_first() -> None:
    versions = [
        TalosVersion.parse(v) for v in ("v1.10.1", "v1.11.5", "v1.12.0-beta.1", "v1.11.0", "v1.7.7")
    ]
    assert minor_groups(versions) == [
        {"name": "1.12-pre", "versions": ["v1.12.0-beta.1"]},
        {"name": "1.11", "versions": ["v1.11.5", "v1.11.0"]},
        {"name": "1.10", "versions": ["v1.10.1"]},
        {"name": "1.7", "versions": ["v1.7.7"]},
    ]
    assert default_version(versions) == "v1.11.5"
    assert default_version([TalosVersion.parse("v1.12.0-alpha.1")]) == "v1.12.0-alpha.1"
    assert default_version([]) is None


def test_ui_assets_lead_with_upstreams_default_download() -> None:
    v = TalosVersion.parse("v1.11.5")
    azure = ui_assets(get_platform("azure"), "amd64", v, False)
    assert azure[0] == "azure-amd64.vhd.xz"
    assert "azure-amd64.vhd.zst" in azure and "azure-amd64.qcow2" in azure
    metal = ui_assets(get_platform("metal"), "arm64", v, True)
    assert metal[0] == "metal-arm64-secureboot.raw.zst"
    assert "metal-arm64-secureboot-uki.efi" in metal and "kernel-arm64" not in metal
    assert ui_assets(get_platform("hcloud"), "arm64", v, False) == []
    assert ui_assets(get_platform("azure"), "amd64", TalosVersion.parse("v1.4.0"), True) == []


def test_mirror_snippet_sends_upstreams_factory_here() -> None:
    assert mirror_snippet("https://factory.example/") == (
        "machine:\n  registries:\n    mirrors:\n      factory.talos.dev:\n"
        "        endpoints:\n          - https://factory.example\n"
    )
