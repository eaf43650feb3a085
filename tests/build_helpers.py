"""Helpers for tests that build assets from the sample release."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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


def private_config(sample_config: Path, where: Path, **overrides: object) -> Path:
    """A copy of the sample config with its own store (and any other top-level keys replaced)."""
    where.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(sample_config.read_text())
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
