"""The pipeline end to end on the sample release: three schematics, two versions, a small matrix, a
local registry. Tests run in order on one published tree (each one's changes are the next one's
starting point), so the whole file pays for one full build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import oras.client
import pytest
import yaml
from build_helpers import absolute_paths

from imagefactory import tree
from imagefactory.config import Config, load_config
from imagefactory.oci.registry import RegistryTarget
from imagefactory.plan import make_plan
from imagefactory.publish.generations import complete_generations, current
from imagefactory.signing.keys import load_private_key
from imagefactory.signing.policy import Verifier
from imagefactory.sources import lock_source
from tests.integration.conftest import RunningRegistry

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
IMAGEFACTORY = Path(sys.executable).parent / "imagefactory"
ASSETS = ["kernel", "cmdline", "initramfs", "pxe"]
SCHEMATICS = {
    "vanilla.yaml": "customization: {}\n",
    "tools.yaml": (
        "customization:\n"
        "  extraKernelArgs: [net.ifnames=0, talos.marker=pipeline]\n"
        "  systemExtensions:\n"
        "    officialExtensions: [siderolabs/iscsi-tools, siderolabs/intel-ucode]\n"
    ),
    "meta.yaml": (
        'customization:\n  meta:\n    - key: 0xa\n      value: \'{"externalIPs":["1.2.3.4"]}\'\n'
    ),
}


@dataclass
class Factory:
    root: Path
    config_path: Path
    registry: RunningRegistry

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    @property
    def schematics(self) -> Path:
        return self.root / "schematics"

    def run(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # --directory: Snakemake's own state stays with this factory, not in the repository.
        argv = [
            str(SNAKEMAKE),
            "-c2",
            "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(self.root),
            "--configfile", str(self.config_path),
            *extra,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=self.root)
        if check and done.returncode != 0:
            pytest.fail(f"snakemake failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(IMAGEFACTORY), *args, "--config", str(self.config_path)]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    def report(self) -> dict[str, object]:
        gen = current(self.config)
        assert gen is not None
        report = gen.report()
        assert report is not None
        return report


@pytest.fixture(scope="module")
def factory(
    sample_release: Path, registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Factory]:
    root = tmp_path_factory.mktemp("factory")
    document = absolute_paths(yaml.safe_load(sample_release.read_text()), sample_release.parent)
    publish_key = document["publish"]["signingKeyPath"]
    document.update(
        schematics="schematics",
        public="public",
        store="store",
        externalURL="http://factory.test:8080/",
        targets={
            "secureBoot": False,
            "platforms": [{"platform": "metal", "archs": ["amd64"], "assets": ASSETS}],
        },
        registry={
            "url": f"{registry.host}/factory",
            "insecure": True,
            "signing": {"keyPath": publish_key},
        },
    )
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(document))
    lock = json.loads((sample_release.parent / "sources.lock.json").read_text())
    lock["source"] = lock_source(load_config(config_path))
    (root / "sources.lock.json").write_text(json.dumps(lock))
    (root / "schematics").mkdir()
    for name, text in SCHEMATICS.items():
        (root / "schematics" / name).write_text(text)
    made = Factory(root, config_path, registry)
    made.run()
    yield made


def published_files(public: Path) -> dict[str, Path]:
    return {str(p.relative_to(public)): p for p in public.rglob("*") if p.is_file()}


def ids(factory: Factory) -> dict[str, str]:
    from imagefactory.schematic import parse_schematic

    return {
        p.stem: parse_schematic(p.read_bytes()).id
        for p in sorted(factory.schematics.glob("*.yaml"))
    }


def test_tree_matches_the_layout(factory: Factory) -> None:
    config = factory.config
    public = config.public
    assert public.is_symlink()
    files = published_files(public)
    for name, schematic_id in ids(factory).items():
        assert (
            files[tree.schematic_path(schematic_id)].read_text() == SCHEMATICS[f"{name}.yaml"]
            or name
        )
        for version in ("v1.7.7", "v1.11.5"):
            for asset in ("kernel-amd64", "cmdline-metal-amd64", "initramfs-amd64.xz"):
                path = tree.image_path(schematic_id, version, asset)
                for suffix in ("", *tree.SIDECAR_SUFFIXES):
                    assert path + suffix in files
            script = files[tree.pxe_path(schematic_id, version, "metal-amd64")].read_text()
            cmdline = files[
                tree.image_path(schematic_id, version, "cmdline-metal-amd64")
            ].read_text()
            assert script == tree.pxe_script(
                "http://factory.test:8080/", schematic_id, version, "metal", "amd64",
                secureboot=False, cmdline=cmdline.strip(),
            ).decode()  # fmt: skip
    assert json.loads(files[tree.VERSIONS].read_text()) == ["v1.7.7", "v1.11.5"]
    for version in ("v1.7.7", "v1.11.5"):
        catalog = json.loads(files[tree.extensions_path(version)].read_text())
        assert "siderolabs/iscsi-tools" in {e["name"] for e in catalog}
        assert tree.overlays_path(version) in files
    key = load_private_key(config.publish_signing_key)  # type: ignore[arg-type]
    assert files[tree.SIGNING_KEY].read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert key.public_key().public_numbers().x
    assert config.secureboot is not None
    assert files[tree.SECUREBOOT_CERT].read_bytes() == config.secureboot.signing_cert.read_bytes()
    # Built files are hard links into the content store, not copies.
    kernel = files[tree.image_path(ids(factory)["vanilla"], "v1.11.5", "kernel-amd64")]
    assert kernel.stat().st_nlink >= 2
    report = factory.report()
    assert len(report["built"]) == 6 and report["failed"] == []  # type: ignore[arg-type]
    # The web UI is rendered into the generation; no schematic is marked public, so none is listed.
    assert {"index.html", "ui/versions.html", "ui/data.json"} <= files.keys()
    assert not [p for p in files if p.startswith("ui/schematics/") and p.count("/") > 2]
    for schematic_id in ids(factory).values():
        assert schematic_id not in files["ui/data.json"].read_text()


def test_every_checksum_and_signature_verifies(factory: Factory) -> None:
    public = factory.config.public
    key = public / tree.SIGNING_KEY
    checked = 0
    for path in sorted(public.rglob("*.sig")):
        published = path.with_suffix("")
        data = published.read_bytes()
        for suffix, algo in ((".sha256", hashlib.sha256), (".sha512", hashlib.sha512)):
            line = published.with_name(published.name + suffix).read_text()
            assert line == tree.checksum_line(algo(data).hexdigest(), published.name)
        command = (
            f"openssl dgst -sha256 -verify {key} "
            f"-signature <(base64 -d {published.name}.sig) {published.name}"
        )
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=published.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0 and "Verified OK" in done.stdout, (published, done.stderr)
        checked += 1
    assert checked == 3 * 2 * 4


def test_every_asset_is_in_the_registry_cache_signed(factory: Factory) -> None:
    config = factory.config
    assert config.registry is not None
    repository = config.registry.repository(config.publish.cache_repository)
    verifier = Verifier.with_public_key(load_private_key(config.publish_signing_key).public_key())  # type: ignore[arg-type]
    receipts = sorted((config.store / "pipeline" / "cells").glob("*/*/*.cached.json"))
    cached = [json.loads(p.read_text()) for p in receipts]
    assets = [r for r in cached if "buildKey" in r]
    assert len(assets) == 3 * 2 * 3  # kernel, cmdline, initramfs; PXE scripts are not builds
    with RegistryTarget(factory.registry.host, insecure=True) as target:
        for receipt in assets:
            tag = receipt["buildKey"]
            descriptor, manifest = target.get_manifest(repository, tag)
            verifier.verify(
                target, repository, descriptor.digest, f"{factory.registry.host}/{repository}"
            )
            layer = json.loads(manifest)["layers"][0]
            assert layer["mediaType"] == "application/data"
            path = next(p for p, e in receipt["files"].items() if "sha512" in e)
            dest = factory.root / "pulled"
            target.fetch_blob(repository, layer["digest"], dest)
            assert dest.read_bytes() == (config.public / path).read_bytes()
    # A third-party client, oras-py, reads the same entries by tag.
    client = oras.client.OrasClient(hostname=factory.registry.host, insecure=True)
    for receipt in assets:
        path = next(p for p, e in receipt["files"].items() if "sha512" in e)
        pulled = client.pull(
            target=f"{factory.registry.host}/{repository}:{receipt['buildKey']}",
            outdir=str(factory.root / "oras" / receipt["buildKey"]),
        )
        assert [Path(p).read_bytes() for p in pulled] == [(config.public / path).read_bytes()]
    skopeo = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw",
         f"docker://{factory.registry.host}/{repository}:{assets[0]['buildKey']}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(skopeo.stdout)["layers"][0]["mediaType"] == "application/data"


def store_snapshot(config: Config) -> dict[str, int]:
    return {
        str(p): p.stat().st_mtime_ns
        for base in (config.store / "generations", config.store / "blobs", config.store / "builds")
        for p in base.rglob("*")
    }


def test_a_rerun_writes_nothing(factory: Factory) -> None:
    config = factory.config
    before, gen = store_snapshot(config), current(config)
    done = factory.run()
    assert "all published" in done.stderr
    assert store_snapshot(config) == before and current(config) == gen


def test_a_fourth_schematic_builds_only_its_cells(factory: Factory) -> None:
    (factory.schematics / "args.yaml").write_text("customization:\n  extraKernelArgs: [quiet]\n")
    plan = make_plan(factory.config)
    new_id = ids(factory)["args"]
    assert {c.cell_id for c in plan.cells} == {f"{new_id}/v1.7.7", f"{new_id}/v1.11.5"}
    factory.run()
    report = factory.report()
    assert sorted(report["built"]) == [f"{new_id}/v1.11.5", f"{new_id}/v1.7.7"]  # type: ignore[call-overload]
    assert len(report["reused"]) == 6  # type: ignore[arg-type]
    pushed = [
        json.loads(p.read_text()).get("cache", {}).get("pushed")
        for p in (factory.config.store / "pipeline" / "cells").glob("*/*/*.cached.json")
    ]
    assert pushed.count(True) == 8 * 3  # every key pushed once, by the run that built it


def test_a_changed_extension_digest_rebuilds_only_the_cells_using_it(factory: Factory) -> None:
    lock_path = factory.root / "sources.lock.json"
    lock = json.loads(lock_path.read_text())
    old = lock["versions"]["v1.7.7"]["extensions"]["siderolabs/intel-ucode"]
    assert lock["versions"]["v1.11.5"]["extensions"]["siderolabs/intel-ucode"] != old
    lock["versions"]["v1.11.5"]["extensions"]["siderolabs/intel-ucode"] = old
    lock_path.write_text(json.dumps(lock))
    plan = make_plan(factory.config)
    assert [c.cell_id for c in plan.cells] == [f"{ids(factory)['tools']}/v1.11.5"]
    factory.run()
    assert factory.report()["built"] == [f"{ids(factory)['tools']}/v1.11.5"]


def test_a_failed_cell_is_reported_and_not_published(factory: Factory) -> None:
    # gvisor needs Talos >= 1.9: its v1.7.7 cell fails, its v1.11.5 cell is built.
    (factory.schematics / "gvisor.yaml").write_text(
        "customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/gvisor]\n"
    )
    gvisor = ids(factory)["gvisor"]
    factory.run()
    report = factory.report()
    assert report["built"] == [f"{gvisor}/v1.11.5"]
    (failed,) = report["failed"]  # type: ignore[misc]
    assert failed["cell"] == f"{gvisor}/v1.7.7"
    assert "version constraint >= v1.9.0" in " ".join(failed["errors"])
    public = factory.config.public
    assert (public / tree.image_path(gvisor, "v1.11.5", "initramfs-amd64.xz")).is_file()
    assert not (public / tree.image_path(gvisor, "v1.7.7", "kernel-amd64")).exists()
    # Tried again on the next run, still failing: reported, and no new generation.
    gen = current(factory.config)
    done = factory.run()
    assert "FAILED" in done.stdout + done.stderr and current(factory.config) == gen
    (factory.schematics / "gvisor.yaml").unlink()


def test_kill_9_mid_run_leaves_the_previous_generation_serving(factory: Factory) -> None:
    config = factory.config
    factory.run()  # publish the gvisor removal first
    gen = current(config)
    assert gen is not None
    (factory.schematics / "late.yaml").write_text("customization:\n  extraKernelArgs: [late=1]\n")
    argv = [
        str(SNAKEMAKE), "-c2", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(factory.root), "--configfile", str(factory.config_path),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=factory.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        cells = config.store / "pipeline" / "cells"
        before = set(cells.glob("*/*/*.built.json"))
        while set(cells.glob("*/*/*.built.json")) == before:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert current(config) == gen
    late = ids(factory)["late"]
    assert not (config.public / tree.schematic_path(late)).exists()
    assert (config.public / tree.VERSIONS).is_file()
    # Snakemake's own locks (and its note of a job it did not see finish) outlive a kill -9:
    # --unlock, then a run that may redo that one job finishes the publish.
    factory.run("--unlock")
    factory.run("--rerun-incomplete")
    assert current(config) != gen
    assert (config.public / tree.image_path(late, "v1.11.5", "kernel-amd64")).is_file()


def test_generations_rollback_and_gc(factory: Factory) -> None:
    config = factory.config
    numbers = [g.number for g in complete_generations(config)]
    listing = factory.cli("generations")
    assert listing.returncode == 0 and f"* {numbers[-1]:6d}" in listing.stdout
    late = ids(factory)["late"]
    assert factory.cli("rollback").returncode == 0
    assert current(config).number == numbers[-2]  # type: ignore[union-attr]
    assert not (config.public / tree.schematic_path(late)).exists()
    assert factory.cli("rollback", "--to", str(numbers[-1])).returncode == 0
    assert (config.public / tree.schematic_path(late)).exists()
    done = factory.cli("gc", "--keep", "2")
    assert done.returncode == 0, done.stderr
    assert [g.number for g in complete_generations(config)] == numbers[-2:]
    gone = config.store / "generations" / f"{numbers[0]:06d}"
    assert not gone.exists()
    # What the kept generations serve is intact.
    for path in published_files(config.public).values():
        assert path.stat().st_size >= 0
    test_every_checksum_and_signature_verifies_after_gc(factory)


def test_every_checksum_and_signature_verifies_after_gc(factory: Factory) -> None:
    public = factory.config.public
    for path in sorted(public.rglob("*.sha256")):
        published = path.with_suffix("")
        assert path.read_text().split()[0] == hashlib.sha256(published.read_bytes()).hexdigest()


def test_a_bad_schematic_stops_the_run_before_any_build(factory: Factory) -> None:
    config = factory.config
    (factory.schematics / "bad.yaml").write_text("customization:\n  extraKernelArgs: nope\n")
    (factory.schematics / "new.yaml").write_text("customization:\n  extraKernelArgs: [new=1]\n")
    gen = current(config)
    before = store_snapshot(config)
    done = factory.run(check=False)
    assert done.returncode != 0
    assert "bad.yaml" in done.stderr and "line 2" in done.stderr
    assert factory.cli("validate").returncode == 2
    assert current(config) == gen and store_snapshot(config) == before
    (factory.schematics / "bad.yaml").unlink()
    (factory.schematics / "new.yaml").unlink()
    assert factory.cli("validate").returncode == 0
    shutil.rmtree(factory.root / "pulled", ignore_errors=True)
