"""What each pipeline job made, as a small JSON receipt; the files themselves go to the content store.

A receipt is Snakemake's output for a job: `files` maps tree paths to digests in the content store,
`status` is `ok` or `failed` (with the error). A failed job still writes its receipt, so one bad cell
never stops the others; the publisher leaves failed cells out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory import tree
from imagefactory.config import Config
from imagefactory.errors import FactoryError
from imagefactory.files import write_atomic
from imagefactory.publish.content import ContentStore, Digests
from imagefactory.publish.sidecars import load_signing_key, sidecars

log = logging.getLogger(__name__)

RECEIPT_STAGES = ("built", "signed", "cached")


def pipeline_dir(config: Config) -> Path:
    return config.store / "pipeline"


def receipt_path(config: Config, cell_key: str, kind: str, name: str, stage: str) -> Path:
    """store/pipeline/cells/<cell key>/<kind>/<name>.<stage>.json: the Snakemake rules' outputs."""
    return pipeline_dir(config) / "cells" / cell_key / kind / f"{name}.{stage}.json"


def installer_receipt_path(config: Config, cell_key: str, image: str) -> Path:
    return pipeline_dir(config) / "cells" / cell_key / "v2" / f"{image}.json"


def read_receipt(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_bytes())
    return loaded


def write_receipt(path: Path, receipt: Mapping[str, Any]) -> None:
    write_atomic(path, (json.dumps(receipt, indent=1, sort_keys=True) + "\n").encode())


def failed(what: str, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, FactoryError):
        message = " ".join(str(exc).split())
    else:  # a bug: say which, keep the run going for the other cells
        log.exception("%s: internal error", what)
        message = f"internal error: {type(exc).__name__}: {exc}"
    return {"status": "failed", "error": f"{what}: {message}", "files": {}}


@dataclass(frozen=True)
class CellTarget:
    """What one build job is told: the cell and the target (from the plan, via Snakemake params)."""

    schematic_file: Path
    version: str
    kind: str
    asset: str
    path: str  # in the tree


def build_target(config: Config, job: CellTarget) -> dict[str, Any]:
    """Build (or reuse) one target's file and put it in the content store."""
    from imagefactory.build import build_asset  # noqa: PLC0415
    from imagefactory.commands import read_schematic  # noqa: PLC0415
    from imagefactory.profile import resolve  # noqa: PLC0415
    from imagefactory.versions import TalosVersion  # noqa: PLC0415

    what = job.path
    try:
        schematic = read_schematic(str(job.schematic_file))
        version = TalosVersion.parse(job.version)
        built = build_asset(config, schematic, version, job.asset)
        store = ContentStore(config)
        if job.kind == "pxe":
            profile = resolve(job.asset, version, schematic)
            script = tree.pxe_script(
                config.external_url,
                schematic.id,
                version,
                profile.platform,
                str(profile.arch),
                secureboot=profile.secureboot,
                cmdline=built.read_text().strip(),
            )
            hex_digest = store.add_bytes(script)
            digests = _digests_of_store(store, hex_digest)
            return {"status": "ok", "files": {job.path: digests.to_json()}}
        digests = store.add_file(built)
        return {
            "status": "ok",
            "buildKey": built.parent.name,
            "files": {job.path: digests.to_json()},
        }
    except Exception as exc:
        return failed(what, exc)


def _digests_of_store(store: ContentStore, hex_digest: str) -> Digests:
    from imagefactory.publish.content import digests_of  # noqa: PLC0415

    return digests_of(store.path(hex_digest))


def sign_receipt(config: Config, built: Mapping[str, Any]) -> dict[str, Any]:
    """The built receipt plus `.sha256`, `.sha512` and `.sig` beside each file."""
    if built.get("status") != "ok":
        return dict(built)
    try:
        key = load_signing_key(config.publish_signing_key, str(config.path))
        store = ContentStore(config)
        files = dict(built["files"])
        for path, entry in built["files"].items():
            digests = Digests(entry["sha256"], entry["sha512"], entry["size"])
            for side_path, data in sidecars(path, digests, key).items():
                files[side_path] = {"sha256": store.add_bytes(data), "size": len(data)}
        return {**built, "files": files}
    except Exception as exc:
        return failed(next(iter(built["files"]), "sign"), exc)
