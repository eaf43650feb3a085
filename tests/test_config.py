"""Config loading: schema checks with file, field and line; paths resolved beside the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefactory.config import load_config
from imagefactory.errors import InvalidInput

GOOD = """\
sources:
  registry: oci-layout:oci
  namespace: mirror
  insecure: true
  verify:
    publicKey: cosign.pub
versions:
  list: [v1.9.6, v1.11.5]
  broken: [v1.9.5]
schematics: ../schematics
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_good_config_resolves_paths_beside_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.sources.layout_path == tmp_path / "oci"
    assert config.sources.verify.public_key == tmp_path / "cosign.pub"
    assert config.sources.repository("siderolabs/imager") == "mirror/siderolabs/imager"
    assert config.versions.listed == ("v1.9.6", "v1.11.5")
    assert config.versions.broken == ("v1.9.5",)
    assert config.schematics == (tmp_path / "../schematics").resolve()
    assert config.public == tmp_path / "public"
    assert config.lock_path == tmp_path / "sources.lock.json"
    assert config.sources.components.installer_base == "siderolabs/installer-base"


def test_keyless_defaults_are_upstreams(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    publicKey: cosign.pub", "    keyless:\n      rootCertificate: root.pem"
    )
    keyless = load_config(write(tmp_path, text)).sources.verify.keyless
    assert keyless is not None
    assert keyless.issuer == "https://accounts.google.com"
    assert keyless.subject_regexp.startswith("(@siderolabs")
    assert keyless.root_certificate == tmp_path / "root.pem"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("  namespace: mirror\n", "  colour: blue\n"),
            "line 3: sources.colour: unknown field",
        ),
        (GOOD.replace("insecure: true", "insecure: maybe"), "line 4: sources.insecure:"),
        (GOOD.replace("    publicKey: cosign.pub\n", ""), "line 5: sources.verify:"),
        (GOOD.replace("  list: [v1.9.6, v1.11.5]\n", ""), "line 7: versions:"),
        ("sources: [\n", "yaml: line 2:"),
        ("", "config is empty"),
        (GOOD.replace("sources:", "source:"), "line 1: source: unknown field"),
    ],
)
def test_bad_config_names_field_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)
    assert str(tmp_path / "config.yaml") in str(info.value)


def test_missing_config_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_oversized_config_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "#" * (1 << 20) + "\n")
    with pytest.raises(InvalidInput, match="larger than"):
        load_config(path)


def test_secure_boot_keys_and_external_url(tmp_path: Path) -> None:
    text = GOOD + (
        "externalURL: https://factory.example/\n"
        "secureBoot:\n  signingKeyPath: sb/key.pem\n  signingCertPath: sb/cert.pem\n"
        "  pcrKeyPath: sb/pcr.pem\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.external_url == "https://factory.example/"
    assert config.secureboot is not None
    assert config.secureboot.signing_key == tmp_path / "sb/key.pem"
    assert config.secureboot.pcr_key == tmp_path / "sb/pcr.pem"
    assert load_config(write(tmp_path, GOOD)).secureboot is None


def test_secure_boot_needs_both_key_and_certificate(tmp_path: Path) -> None:
    text = GOOD + "secureBoot:\n  signingKeyPath: sb/key.pem\n"
    with pytest.raises(InvalidInput, match="secureBoot: 'signingCertPath' is a required property"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "sources: {}\n", 'line 11: duplicate key "sources"'),
        (
            GOOD.replace("insecure: true", "insecure: !!python/name:os.system"),
            "line 4: unknown tag",
        ),
        ("\xff\xfe", "config is empty"),
        ("\xffsources: {}", "yaml: "),
    ],
)
def test_unsafe_or_ambiguous_yaml_is_bad_input(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    with pytest.raises(InvalidInput, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value)
