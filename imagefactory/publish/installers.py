"""A cell's installer image in the static `v2/` tree (and pushed, signed and tagged, to the registry).

The image comes from imagefactory.installer_image: both arches, an OCI index, blobs in the store.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from imagefactory.config import Config
from imagefactory.oci.digest import sha256_bytes
from imagefactory.publish.content import ContentStore
from imagefactory.publish.receipts import failed


def installer_receipt(
    config: Config, schematic_file: Path, version_text: str, image: str
) -> dict[str, Any]:
    from imagefactory.commands import read_schematic  # noqa: PLC0415
    from imagefactory.inputs import LockedSources  # noqa: PLC0415
    from imagefactory.installer_image import installer_image, push_installer  # noqa: PLC0415
    from imagefactory.versions import TalosVersion  # noqa: PLC0415

    secureboot = image.endswith("-secureboot")
    try:
        schematic = read_schematic(str(schematic_file))
        version = TalosVersion.parse(version_text)
        sources = LockedSources(config)
        built = installer_image(config, schematic, version, secureboot=secureboot, sources=sources)
        store = ContentStore(config)
        base = posixpath.join("v2", built.name, schematic.id)
        files: dict[str, dict[str, Any]] = {}
        for data in (*(m.manifest for m in built.manifests), built.index):
            files[posixpath.join(base, "manifests", sha256_bytes(data))] = {
                "sha256": store.add_bytes(data),
                "size": len(data),
            }
        files[posixpath.join(base, "manifests", version.tag)] = {
            "sha256": store.add_bytes(built.index),
            "size": len(built.index),
        }
        for digest, path in sorted(built.blobs.items()):
            hex_digest = digest.removeprefix("sha256:")
            if not store.has(hex_digest):
                store.add_file(path)
            files[posixpath.join(base, "blobs", digest)] = {"sha256": hex_digest}
        receipt: dict[str, Any] = {"status": "ok", "files": files, "digest": built.digest}
        if config.registry is not None and config.publish.installers:
            pushed = push_installer(
                config, schematic, version, secureboot=secureboot, sources=sources
            )
            receipt["pushed"] = pushed.reference
        return receipt
    except Exception as exc:
        return failed(f"{image} image of {schematic_file}", exc)
