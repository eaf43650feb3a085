"""Helpers for tests that build assets from the sample release."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from imagefactory.config import load_config
from imagefactory.sources import lock_source

BOOT_SCHEMATIC = """\
customization:
  extraKernelArgs:
    - console=ttyS0
    - talos.marker=factory-test
  meta:
    - key: 0xa
      value: '{"externalIPs":["1.2.3.4"]}'
  systemExtensions:
    officialExtensions:
      - siderolabs/intel-ucode
      - siderolabs/iscsi-tools
"""


def absolute_paths(config: dict[str, Any], base: Path) -> dict[str, Any]:
    """The sample config's relative paths (layout, keys) made absolute, for a copy elsewhere."""
    src = config["sources"]
    if src["registry"].startswith("oci-layout:"):
        src["registry"] = "oci-layout:" + str(base / src["registry"].removeprefix("oci-layout:"))
    verify = src["verify"]
    if "publicKey" in verify:
        verify["publicKey"] = str(base / verify["publicKey"])
    for section in ("secureBoot", "publish"):
        for name, value in config.get(section, {}).items():
            if name.endswith("Path"):
                config[section][name] = str(base / value)
    return config


def private_config(sample_config: Path, where: Path, **overrides: object) -> Path:
    """A copy of the sample config with its own store (and any other top-level keys replaced)."""
    where.mkdir(parents=True, exist_ok=True)
    config = absolute_paths(yaml.safe_load(sample_config.read_text()), sample_config.parent)
    # Build tests choose their own Secure Boot keys (or none): pass secureBoot= to have some.
    config.pop("secureBoot", None)
    config["store"] = str(where / "store")
    config.update(overrides)
    path = where / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    # The same source, locked already: only the lock's own note of where it is moves with the copy.
    lock = json.loads((sample_config.parent / "sources.lock.json").read_text())
    lock["source"] = lock_source(load_config(path))
    (where / "sources.lock.json").write_text(json.dumps(lock))
    return path


def write_schematic(where: Path, text: str = BOOT_SCHEMATIC) -> Path:
    path = where / "schematic.yaml"
    path.write_text(text)
    return path


def signing_pair(where: Path, name: str, subject: str) -> tuple[Path, Path]:
    """A self-signed RSA key and certificate, as a site's Secure Boot db key would be."""
    key, cert = where / f"{name}.key", where / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
         "-subj", f"/CN={subject}/", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def pcr_key(where: Path) -> Path:
    path = where / "pcr.key"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True
    )
    return path
