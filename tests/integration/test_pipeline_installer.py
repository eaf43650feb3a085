"""The pipeline's installer images: the read-only `v2/` tree in the generation (both arches, by tag
and digest) and the same index pushed, signed and tagged in the registry."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from build_helpers import absolute_paths

from imagefactory.config import load_config
from imagefactory.oci import media
from imagefactory.oci.registry import RegistryTarget
from imagefactory.schematic import parse_schematic
from imagefactory.signing.keys import load_private_key
from imagefactory.signing.policy import Verifier
from imagefactory.sources import lock_source
from tests.integration.conftest import RunningRegistry

REPO = Path(__file__).resolve().parents[2]


def test_installer_in_the_v2_tree_and_the_registry(
    sample_release: Path, registry: RunningRegistry, tmp_path: Path
) -> None:
    document = absolute_paths(yaml.safe_load(sample_release.read_text()), sample_release.parent)
    key_path = document["publish"]["signingKeyPath"]
    document.update(
        schematics="schematics",
        public="public",
        store="store",
        targets={
            "versions": ["v1.11.5"],
            "secureBoot": False,
            "platforms": [{"platform": "metal", "archs": ["amd64"], "assets": ["installer"]}],
        },
        registry={
            "url": f"{registry.host}/pipe",
            "insecure": True,
            "signing": {"keyPath": key_path},
        },
        publish={"signingKeyPath": key_path, "cache": False},
    )
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(document))
    lock = json.loads((sample_release.parent / "sources.lock.json").read_text())
    lock["source"] = lock_source(load_config(config_path))
    (tmp_path / "sources.lock.json").write_text(json.dumps(lock))
    (tmp_path / "schematics").mkdir()
    (tmp_path / "schematics" / "vanilla.yaml").write_text("customization: {}\n")
    schematic_id = parse_schematic(b"customization: {}\n").id
    snakemake = Path(sys.executable).parent / "snakemake"
    done = subprocess.run(
        [str(snakemake), "-c2", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(config_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    base = tmp_path / "public" / "v2" / "installer" / schematic_id
    index_bytes = (base / "manifests" / "v1.11.5").read_bytes()
    digest = "sha256:" + hashlib.sha256(index_bytes).hexdigest()
    assert (base / "manifests" / digest).read_bytes() == index_bytes
    index = json.loads(index_bytes)
    assert index["mediaType"] == media.OCI_INDEX
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}
    for entry in index["manifests"]:
        manifest = (base / "manifests" / entry["digest"]).read_bytes()
        assert "sha256:" + hashlib.sha256(manifest).hexdigest() == entry["digest"]
        parsed = json.loads(manifest)
        for blob in (parsed["config"], *parsed["layers"]):
            data = (base / "blobs" / blob["digest"]).read_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == blob["digest"]
            assert len(data) == blob["size"]

    repository = f"pipe/installer/{schematic_id}"
    verifier = Verifier.with_public_key(load_private_key(Path(key_path)).public_key())
    with RegistryTarget(registry.host, insecure=True) as target:
        descriptor, pushed = target.get_manifest(repository, "v1.11.5")
        assert pushed == index_bytes
        verifier.verify(target, repository, descriptor.digest, f"{registry.host}/{repository}")
    inspect = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--override-arch", "arm64",
         f"docker://{registry.host}/{repository}:v1.11.5"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if inspect.returncode != 0:
        pytest.fail(inspect.stderr)
    assert json.loads(inspect.stdout)["Architecture"] == "arm64"
