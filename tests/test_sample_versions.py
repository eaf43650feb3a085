"""Sample versions, the quirks they follow, and the release request's input checks."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from imagefactory.commands import sample_cmd
from imagefactory.errors import InvalidInput
from imagefactory.quirks import Compression
from imagefactory.sample.keys import SampleKeys
from imagefactory.sample.release import ReleaseRequest, config_document
from imagefactory.sample.versions import DEFAULT_VERSIONS, SampleVersion, parse_versions


def test_default_versions_span_the_quirk_boundaries() -> None:
    versions = parse_versions(",".join(DEFAULT_VERSIONS))
    assert [v.tag for v in versions] == list(DEFAULT_VERSIONS)
    table = [
        (v.compression, v.modules_path, v.firmware_path, v.installer_repository, v.has_overlays)
        for v in versions
    ]
    assert table == [
        (Compression.XZ, "lib/modules", "lib/firmware", "siderolabs/installer", True),
        (Compression.ZSTD, "lib/modules", "lib/firmware", "siderolabs/installer", True),
        (
            Compression.ZSTD,
            "usr/lib/modules",
            "usr/lib/firmware",
            "siderolabs/installer-base",
            True,
        ),
        (
            Compression.ZSTD,
            "usr/lib/modules",
            "usr/lib/firmware",
            "siderolabs/installer-base",
            True,
        ),
    ]
    assert SampleVersion.parse("v1.6.0").has_overlays is False
    epochs = [v.source_date_epoch for v in versions]
    assert epochs == sorted(set(epochs))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("v1.9.6,,v1.11.5", "empty item"),
        ("1.9.6", "not a release tag"),
        ("v1.9", "not a release tag"),
        ("v1.9.6-beta.1", "not a release tag"),
        ("v01.9.6", "not a release tag"),
        ("v1.4.0", "older than v1.5.0"),
        ("v1.9.6,v1.9.6", "twice"),
    ],
)
def test_bad_versions(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_versions(text)


def test_versions_are_sorted() -> None:
    assert [v.tag for v in parse_versions("v1.13.0, v1.7.7,v1.10.0")] == [
        "v1.7.7",
        "v1.10.0",
        "v1.13.0",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"push": "http://127.0.0.1:5000"}, "not HOST:PORT"),
        ({"push": "127.0.0.1:5000/x"}, "not HOST:PORT"),
        ({"push": ""}, "not HOST:PORT"),
        ({"namespace": "Mirror"}, "namespace"),
        ({"namespace": "/mirror"}, "namespace"),
        ({"namespace": "a//b"}, "namespace"),
        ({"versions": ()}, "at least one version"),
    ],
)
def test_bad_release_requests(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ReleaseRequest(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_config_document_for_layout_and_registry(tmp_path: Path) -> None:
    versions = parse_versions("v1.9.6,v1.11.5")
    keys = SampleKeys("keys/p.key", "keys/db.key", "keys/db.pem", "keys/pcr.key", "PK", "KEK", "db")
    layout = config_document(ReleaseRequest(tmp_path, versions), keys)
    # Relative to the config: a copy of the sample directory works from its new place.
    assert layout["sources"] == {
        "registry": "oci-layout:oci",
        "namespace": "",
        "insecure": False,
        "verify": {"publicKey": "cosign.pub"},
    }
    assert layout["versions"] == {"list": ["v1.9.6", "v1.11.5"], "broken": []}
    assert layout["secureBoot"]["signingCertPath"] == "keys/db.pem"
    assert layout["publish"] == {"signingKeyPath": "keys/p.key"}
    pushed = config_document(ReleaseRequest(tmp_path, versions, "127.0.0.1:5000", "mirror"), keys)
    assert pushed["sources"]["registry"] == "127.0.0.1:5000"
    assert pushed["sources"]["namespace"] == "mirror"
    assert pushed["sources"]["insecure"] is True
    request = ReleaseRequest(tmp_path, versions, "127.0.0.1:5000", "mirror")
    assert request.repository("siderolabs/imager") == "mirror/siderolabs/imager"
    assert request.origin == "127.0.0.1:5000"


def test_cli_options() -> None:
    parser = argparse.ArgumentParser()
    sample_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["sample-release", "--out", "x", "--versions", "v1.9.6"])
    assert args.out == Path.cwd() / "x"  # normalized once, where it is parsed
    assert args.push is None and args.namespace == ""
    assert args.func is sample_cmd.run
    defaults = parser.parse_args(["sample-release", "--out", "x"])
    assert defaults.versions == ",".join(DEFAULT_VERSIONS)


def test_cli_bad_input_is_invalid_input(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sample_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["sample-release", "--out", str(tmp_path), "--versions", "v1.x"])
    with pytest.raises(InvalidInput, match=r"v1\.x"):
        sample_cmd.run(args)
