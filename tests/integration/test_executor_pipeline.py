"""The factory's own pipeline through the cluster-generic profile: every job is submitted by the real
snakemake-executor-plugin-cluster-generic and runs as a detached process in its own session that
shares only the working directory's files (store, tree) with the run; the result is the same tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from imagefactory import tree
from tests.integration.test_git_push import VANILLA, VERSION, tiny_factory

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "workflow" / "profiles" / "cluster-generic"


def test_pipeline_runs_on_the_cluster_generic_executor(
    sample_release: Path, tmp_path: Path
) -> None:
    config = tmp_path / "factory" / "config.yaml"
    (tmp_path / "factory" / "schematics").mkdir(parents=True)
    shutil.copy(REPO / "schematics" / "vanilla.yaml", tmp_path / "factory" / "schematics")
    public = tmp_path / "factory" / "public"
    tiny_factory(
        sample_release, config, schematics="schematics", store=tmp_path / "store", public=public
    )
    jobs = tmp_path / "jobs"
    snakemake = Path(sys.executable).parent / "snakemake"
    done = subprocess.run(
        [str(snakemake), "--profile", str(PROFILE), "--configfile", str(config)],
        cwd=REPO,
        env={**os.environ, "IMAGEFACTORY_JOBS_DIR": str(jobs)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]

    # Every job but the local ones went through the plugin's submit command, each in its own session.
    submitted = log.count("with external jobid")
    records = sorted(jobs.iterdir())
    assert submitted >= 2 and len(records) == submitted, log[-4000:]
    for record in records:
        assert (record / "exit").read_text().strip() == "0", (record / "log").read_text()
        assert (record / "session").read_text().strip() == (record / "pid").read_text().strip()
        assert (record / "session").read_text().strip() != str(os.getsid(0))

    # What the remote jobs published is what a local build makes.
    local = tmp_path / "local"
    imagefactory = REPO / ".venv" / "bin" / "imagefactory"
    for asset in ("kernel-amd64", "cmdline-metal-amd64"):
        subprocess.run(
            [
                str(imagefactory),
                "build",
                "--config",
                str(config),
                "--schematic",
                VANILLA,
                "--version",
                VERSION,
                "--asset",
                asset,
                "--out",
                str(local),
            ],
            check=True,
            capture_output=True,
        )
        remote = public / tree.image_path(VANILLA, VERSION, asset)
        assert remote.read_bytes() == (local / asset).read_bytes(), asset
        assert (public / (tree.image_path(VANILLA, VERSION, asset) + ".sha256")).is_file()

    # A second run through the executor finds nothing stale and submits nothing.
    again = subprocess.run(
        [str(snakemake), "--profile", str(PROFILE), "--configfile", str(config)],
        cwd=REPO,
        env={**os.environ, "IMAGEFACTORY_JOBS_DIR": str(jobs)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-4000:]
    assert "with external jobid" not in again.stdout + again.stderr
    assert len(list(jobs.iterdir())) == submitted
