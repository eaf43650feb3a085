"""`imagefactory pipeline ...`: the steps the Snakemake rules run (plan, build, sign, cache, installer,
publish), one thin command each; `imagefactory pipeline plan` also says what a run would do.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from imagefactory.commands import common_options


def register(subparsers: Any) -> None:
    pipeline = subparsers.add_parser("pipeline", help="the pipeline's steps (run by Snakemake)")
    steps = pipeline.add_subparsers(dest="step", required=True)
    common = common_options()

    plan = steps.add_parser("plan", parents=[common], help="stale cells against the published tree")
    plan.add_argument("--json", action="store_true", help="print the whole plan as JSON")
    plan.set_defaults(func=run_plan)

    build = steps.add_parser("build", parents=[common], help="build one target into a receipt")
    build.add_argument("--schematic", required=True, type=Path)
    build.add_argument("--version", required=True)
    build.add_argument("--kind", required=True)
    build.add_argument("--asset", required=True)
    build.add_argument("--path", required=True, help="the file's path in the tree")
    build.add_argument("--out", required=True, type=Path, help="receipt to write")
    build.add_argument("--plan", type=Path, help="plan file, for the progress line")
    build.set_defaults(func=run_build)

    sign = steps.add_parser("sign", parents=[common], help="checksums and signatures of a receipt")
    sign.add_argument("receipt", type=Path)
    sign.add_argument("--out", required=True, type=Path)
    sign.set_defaults(func=run_sign)

    cache = steps.add_parser("cache", parents=[common], help="push a receipt's asset to the cache")
    cache.add_argument("receipt", type=Path)
    cache.add_argument("--out", required=True, type=Path)
    cache.set_defaults(func=run_cache)

    installer = steps.add_parser(
        "installer", parents=[common], help="a cell's installer image: v2 tree (and registry push)"
    )
    installer.add_argument("--schematic", required=True, type=Path)
    installer.add_argument("--version", required=True)
    installer.add_argument("--image", required=True, choices=("installer", "installer-secureboot"))
    installer.add_argument("--out", required=True, type=Path)
    installer.set_defaults(func=run_installer)

    publish = steps.add_parser("publish", parents=[common], help="make and switch to a generation")
    publish.add_argument("--plan", required=True, type=Path)
    publish.add_argument("--stages", default="built,signed")
    publish.add_argument("--out", required=True, type=Path, help="where the report is copied")
    publish.set_defaults(func=run_publish)


def run_plan(args: argparse.Namespace) -> int:
    from imagefactory.plan import plan_for

    plan = plan_for(args.config)
    if args.json:
        json.dump(plan.to_json(), sys.stdout, indent=1)
        print()
        return 0
    state = "up to date" if plan.up_to_date else f"{len(plan.cells)} stale of {plan.total} cells"
    print(f"generation {plan.generation}: {state}; removed {len(plan.removed)}")
    for cell in plan.cells:
        print(f"  {cell.cell_id} ({cell.schematic_file.name}): {len(cell.targets)} files")
    return 0


def _progress(plan_file: Path | None, config: Any, note: str) -> None:
    """`cells done/total` of the run, and what this job just did, on stderr (Snakemake's log)."""
    if plan_file is None or not plan_file.is_file():
        print(note, file=sys.stderr)
        return
    from imagefactory.publish.publisher import cell_receipts

    plan = json.loads(plan_file.read_bytes())
    cells = plan["cells"]
    done = sum(
        all(p.is_file() for p in cell_receipts(config, c, ("built",))[: len(c["targets"])])
        for c in cells
    )
    print(f"cells {done}/{len(cells)} built; {note}", file=sys.stderr)


def run_build(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.publish.receipts import CellTarget, build_target, write_receipt

    config = load_config(args.config)
    print(f"building {args.path}", file=sys.stderr)
    job = CellTarget(args.schematic, args.version, args.kind, args.asset, args.path)
    receipt = build_target(config, job)
    write_receipt(args.out, receipt)
    status = "built" if receipt["status"] == "ok" else f"FAILED: {receipt['error']}"
    _progress(args.plan, config, f"{args.path}: {status}")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.publish.receipts import read_receipt, sign_receipt, write_receipt

    config = load_config(args.config)
    write_receipt(args.out, sign_receipt(config, read_receipt(args.receipt)))
    return 0


def run_cache(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.publish.cache import cache_receipt
    from imagefactory.publish.receipts import read_receipt, write_receipt

    config = load_config(args.config)
    write_receipt(args.out, cache_receipt(config, read_receipt(args.receipt)))
    return 0


def run_installer(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.publish.installers import installer_receipt
    from imagefactory.publish.receipts import write_receipt

    config = load_config(args.config)
    receipt = installer_receipt(config, args.schematic, args.version, args.image)
    write_receipt(args.out, receipt)
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from imagefactory.config import load_config
    from imagefactory.files import write_atomic
    from imagefactory.publish.publisher import publish

    config = load_config(args.config)
    plan = json.loads(args.plan.read_bytes())
    _, report = publish(config, plan, tuple(args.stages.split(",")))
    write_atomic(args.out, (json.dumps(report, indent=2) + "\n").encode())
    failed = report.get("failed", [])
    print(
        f"generation {report['generation'] or '(unchanged)'}: built {len(report.get('built', []))}, "
        f"reused {len(report.get('reused', []))}, failed {len(failed)} cells",
        file=sys.stderr,
    )
    for entry in failed:
        print(
            f"  FAILED {entry['cell']} ({entry['file']}): {'; '.join(entry['errors'])}",
            file=sys.stderr,
        )
    return 0
