"""workflow/profiles: the executor profiles are understood by the installed plugins, and the
cluster-generic scripts start, follow and cancel detached jobs (the real plugin, not the local executor).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "workflow" / "profiles"
CLUSTER = PROFILES / "cluster-generic"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

# A workflow of the same shape as the factory's: jobs that write files under a shared directory.
TOY = """\
rule all:
    input: expand("out/{n}.txt", n=range(3))

rule one:
    output: "out/{n}.txt"
    shell: "python3 -c 'import os; print(os.getpid(), os.getsid(0), os.environ[\\"HOME\\"])' > {output}"
"""


def snakemake(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SNAKEMAKE), *args],
        cwd=workdir,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("profile", ["kubernetes", "cluster-generic"])
def test_profile_keys_and_plugins_are_known(tmp_path: Path, profile: str) -> None:
    """Every key is an option of snakemake or of an installed plugin (a typo is an error)."""
    (tmp_path / "Snakefile").write_text(TOY)
    done = snakemake(tmp_path, "--profile", str(PROFILES / profile), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "This was a dry-run" in done.stdout + done.stderr


def test_cluster_generic_runs_each_job_in_its_own_session(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(TOY)
    jobs = tmp_path / "jobs"
    done = snakemake(tmp_path, "--profile", str(CLUSTER), env={"IMAGEFACTORY_JOBS_DIR": str(jobs)})
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert log.count("with external jobid") == 3  # the plugin submitted them; none ran locally
    records = sorted(jobs.iterdir())
    assert len(records) == 3
    for record in records:
        assert (record / "exit").read_text().strip() == "0"
        # setsid made the job a session leader, apart from snakemake's session
        assert (record / "session").read_text().strip() == (record / "pid").read_text().strip()
    seen = [(tmp_path / "out" / f"{n}.txt").read_text().split() for n in range(3)]
    homes = {home for _, _, home in seen}
    assert len(homes) == 3 and all(home.startswith(str(jobs)) for home in homes)
    assert {int(sid) for _, sid, _ in seen}.isdisjoint({os.getsid(0)})


def test_cluster_generic_reports_a_failed_job(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(TOY.replace("python3 -c", "exit 3; python3 -c"))
    jobs = tmp_path / "jobs"
    done = snakemake(tmp_path, "--profile", str(CLUSTER), env={"IMAGEFACTORY_JOBS_DIR": str(jobs)})
    assert done.returncode != 0
    assert "Error in rule one" in done.stdout + done.stderr
    assert not list((tmp_path / "out").glob("*.txt")) if (tmp_path / "out").exists() else True
    assert all((record / "exit").read_text().strip() != "0" for record in jobs.iterdir())


def script(name: str, *args: str, env: dict[str, str]) -> str:
    return subprocess.run(
        [str(CLUSTER / name), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def test_status_and_cancel(tmp_path: Path) -> None:
    env = {"IMAGEFACTORY_JOBS_DIR": str(tmp_path / "jobs")}
    jobscript = tmp_path / "job.sh"
    jobscript.write_text("sleep 60 & wait\n")
    job = script("submit", str(jobscript), env=env)
    assert script("status", job, env=env) == "running"
    script("cancel", job, env=env)
    deadline = time.monotonic() + 10
    while script("status", job, env=env) == "running":
        assert time.monotonic() < deadline, "the cancelled job kept running"
        time.sleep(0.1)
    assert script("status", job, env=env) == "failed"
    quick = tmp_path / "quick.sh"
    quick.write_text("true\n")
    ok = script("submit", str(quick), env=env)
    deadline = time.monotonic() + 10
    while (state := script("status", ok, env=env)) == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert state == "success"
