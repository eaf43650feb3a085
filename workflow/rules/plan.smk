# Plan: load and validate the config (errors name key and line) and every schematic (file, field,
# line), then compare each cell's key with the published generation. Runs when the workflow is
# parsed, so a bad file stops the run before any job; the stale cells are the only jobs.

import os
import shlex
import sys
from pathlib import Path

from imagefactory.cli import one_line
from imagefactory.config import load_config
from imagefactory.errors import FactoryError
from imagefactory.plan import make_plan, planned_cells, stages_for, write_plan
from imagefactory.publish.publisher import cell_receipts
from imagefactory.publish.receipts import pipeline_dir

CONFIG_FILE = str(
    Path(workflow.overwrite_configfiles[-1] if workflow.overwrite_configfiles else "config/config.yaml").resolve()
)
# A job's own Snakemake process reads the plan its main process wrote instead of planning again.
PLAN_ENV = "IMAGEFACTORY_PIPELINE_PLAN"
try:
    FACTORY = load_config(CONFIG_FILE)
    PIPE = str(pipeline_dir(FACTORY))
    STAGES = stages_for(FACTORY)
    if not workflow.is_main_process and os.environ.get(PLAN_ENV):
        PLAN_FILE = Path(os.environ[PLAN_ENV])
        CELLS = planned_cells(FACTORY, PLAN_FILE)
        PUBLISHED = [f"{PIPE}/published/{PLAN_FILE.stem}.json"]
    else:
        PLAN = make_plan(FACTORY)
        PLAN_FILE, PUBLISHED, CELLS = write_plan(PLAN, STAGES)
        os.environ[PLAN_ENV] = str(PLAN_FILE)
        print(PLAN.summary(), file=sys.stderr)
except FactoryError as exc:
    sys.exit(f"imagefactory: error: {one_line(str(exc))}")

IF = f"{shlex.quote(sys.executable)} -m imagefactory"
CONFIG_ARG = f"--config {shlex.quote(CONFIG_FILE)}"

# At most one xz/zstd job at a time unless --resources says otherwise; memory as the machine has.
workflow.global_resources.setdefault("compress", 1)
workflow.global_resources.setdefault(
    "mem_mb", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20) * 3 // 4
)


wildcard_constraints:
    cell="[0-9a-f]{64}",
    name="[^/]+",
    image="installer(-secureboot)?",


def build_args(wildcards, kind):
    """The CLI arguments of one target's build, from the plan (Snakemake params)."""
    cell = CELLS[wildcards.cell]
    target = cell.target(kind, wildcards.name)
    return shlex.join(
        [
            "--schematic", str(cell.schematic_file),
            "--version", cell.version.tag,
            "--kind", kind,
            "--asset", target.asset,
            "--path", target.path,
            "--plan", str(PLAN_FILE),
        ]
    )


def installer_args(wildcards):
    cell = CELLS[wildcards.cell]
    return shlex.join(["--schematic", str(cell.schematic_file), "--version", cell.version.tag])


def publish_inputs(wildcards):
    """Only the stale cells' receipts: `all` never lists every file of the tree."""
    paths = [str(PLAN_FILE)]
    for cell in CELLS.values():
        paths += [str(p) for p in cell_receipts(FACTORY, cell.to_json(), STAGES)]
    return paths


# The jobs' commands; each job's output goes to its log and to the terminal (progress lines).
BUILD = f"{IF} pipeline build {CONFIG_ARG} {{params.job}} --out {{output}} 2>&1 | tee {{log}} >&2"
INSTALLER = (
    f"{IF} pipeline installer {CONFIG_ARG} {{params.job}} --image {{wildcards.image}} "
    "--out {output} 2>&1 | tee {log} >&2"
)
PUBLISH = (
    f"{IF} pipeline publish {CONFIG_ARG} --plan {shlex.quote(str(PLAN_FILE))} "
    f"--stages {','.join(STAGES)} --out {{output}} 2>&1 | tee {{log}} >&2"
)
