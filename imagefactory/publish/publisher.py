"""One publish: the plan's receipts and the current generation's kept cells become a new generation.

A cell with any failed receipt is not published (its previous files, if any, stay); the report says
which cells were built, reused (kept) and failed, and is written beside the generation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagefactory.config import Config
from imagefactory.files import write_atomic
from imagefactory.publish.content import ContentStore
from imagefactory.publish.generations import Generation, assemble, current, publish_lock
from imagefactory.publish.receipts import (
    installer_receipt_path,
    pipeline_dir,
    read_receipt,
    receipt_path,
)
from imagefactory.publish.site import site_files, site_key
from imagefactory.schematic_dir import scan
from imagefactory.sources import read_lock
from imagefactory.webui import render_site


def cell_receipts(config: Config, cell: Mapping[str, Any], stages: tuple[str, ...]) -> list[Path]:
    """The receipts the publish of one planned cell reads (the last stage of each target)."""
    paths = [
        receipt_path(config, cell["key"], t["kind"], t["name"], stages[-1]) for t in cell["targets"]
    ]
    paths += [installer_receipt_path(config, cell["key"], image) for image in cell_images(cell)]
    return paths


def cell_images(cell: Mapping[str, Any]) -> list[str]:
    """The installer images (v2 tree) a cell publishes: one per Secure Boot variant it builds."""
    names = set()
    for target in cell["targets"]:
        if target["kind"] == "installer":
            names.add("installer-secureboot" if "-secureboot" in target["name"] else "installer")
    return sorted(names)


def publish(
    config: Config, plan: Mapping[str, Any], stages: tuple[str, ...]
) -> tuple[Generation | None, dict[str, Any]]:
    """Publish a plan's built cells and report; no generation if the tree would be the same."""
    with publish_lock(config):
        now = current(config)
        if (now.number if now else None) != plan["generation"]:
            # Another publish happened since the plan was made: its cells are ours to keep.
            pass
        previous: dict[str, Any] = now.manifest() if now else {}
        old_cells: dict[str, Any] = previous.get("cells", {})
        cells: dict[str, Any] = {}
        for cell_id in plan["kept"]:
            if cell_id in old_cells:
                cells[cell_id] = old_cells[cell_id]
        built, failed, reused = [], [], list(plan["kept"])
        retry: list[Path] = []
        for cell in plan["cells"]:
            cell_id = f"{cell['id']}/{cell['version']}"
            files: dict[str, str] = {}
            errors = []
            for path in cell_receipts(config, cell, stages):
                try:
                    receipt = read_receipt(path)
                except FileNotFoundError:
                    errors.append(f"{path.name}: not built")
                    continue
                if receipt.get("status") != "ok":
                    errors.append(receipt.get("error", "failed"))
                    retry.append(path)
                    continue
                files.update({p: e["sha256"] for p, e in receipt["files"].items()})
            if errors:
                failed.append({"cell": cell_id, "file": cell["file"], "errors": errors})
                if cell_id in old_cells:
                    cells[cell_id] = old_cells[cell_id]
                continue
            cells[cell_id] = {"key": cell["key"], "files": files}
            built.append(cell_id)
        # A failed job's receipts go once reported, so the next run tries that cell again.
        for path in retry:
            stem = path.name.rsplit(".", 2)[0]
            for stage in stages:
                path.with_name(f"{stem}.{stage}.json").unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        lock = read_lock(config)
        site = site_files(config, lock, scan(config.schematics, config.store / "index"))
        store = ContentStore(config)
        site_map = {path: store.add_bytes(data) for path, data in site.items()}
        key = site_key(site)
        tree_files: dict[str, str] = dict(site_map)
        for cell in cells.values():
            tree_files.update(cell["files"])
        if now is not None and tree_files == _files_of(previous):
            report: dict[str, Any] = {
                "generation": None,
                "built": [],
                "reused": reused,
                "failed": failed,
            }
            write_atomic(
                pipeline_dir(config) / "last-report.json",
                (json.dumps(report, indent=2) + "\n").encode(),
            )
            return None, report
        report = {
            "generation_from": now.number if now else None,
            "built": built,
            "reused": reused,
            "failed": failed,
            "removed": plan["removed"],
            "cells": {"total": len(cells) + len(failed), "published": len(cells)},
            "files": len(tree_files),
        }
        keys = {
            "site": key,
            "cells": {cell_id: c["key"] for cell_id, c in cells.items()},
        }
        gen = assemble(
            config,
            tree_files,
            {"site": {"key": key, "files": site_map}, "cells": cells},
            keys,
            report,
            finish=lambda root: render_site(config, root),
        )
        return gen, {"generation": gen.number, **report}


def _files_of(manifest: Mapping[str, Any]) -> dict[str, str]:
    files: dict[str, str] = dict(manifest.get("site", {}).get("files", {}))
    for cell in manifest.get("cells", {}).values():
        files.update(cell["files"])
    return files
