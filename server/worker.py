"""The processes the server spawns: the same build code as `imagefactory build` and
`imagefactory push-installer`, never run on the reactor thread.

`python -m server.worker --config C asset --schematic FILE --version V --asset A --dest DIR` builds
the asset into the store, then places DIR/A with its `.sha256` and `.sha512` beside it: all written
to a temporary directory first, sidecars renamed into place before the asset, so a reader that
finds the asset finds it whole. `... installer --schematic FILE --version V [--platform P]
[--secureboot] [--v2-root DIR]` answers the digest of the signed installer in the configured
registry, building, pushing and signing it unless one whose signature verifies is there (with
--v2-root, no registry: the installer laid out as a static v2 tree under DIR). The last line on stdout is
JSON: {"status": 200, ...} or {"status", "error"}.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

from imagefactory import tree
from imagefactory.build import build_asset
from imagefactory.cli import one_line
from imagefactory.commands import read_schematic
from imagefactory.config import Config, load_config
from imagefactory.errors import FactoryError, InvalidInput, NotFound
from imagefactory.imager.installer import image_name
from imagefactory.installer_image import installer_image, push_installer, write_v2_tree
from imagefactory.oci.credentials import registry_credentials
from imagefactory.oci.registry import RegistryTarget
from imagefactory.publish.content import Digests
from imagefactory.publish.sidecars import sidecars
from imagefactory.schematic import Schematic
from imagefactory.signing.keys import PrivateKey, load_private_key
from imagefactory.signing.policy import SignatureError, Verifier
from imagefactory.versions import TalosVersion


def place(built: Path, dest_dir: Path, name: str, key: PrivateKey | None) -> Path:
    """Link (or copy) into dest_dir/name with its sidecars (`.sha256`, `.sha512`, and `.sig` when a
    publish signing key is configured); nothing partial is ever visible.

    A hard link is enough here: both names live in the store, which nothing edits in place.
    """
    if "/" in name or name in {"", ".", ".."}:
        raise InvalidInput(f"invalid asset path: {name!r}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".work-"))
    try:
        try:
            os.link(built, work / name)
        except OSError:
            shutil.copyfile(built, work / name)
        # Both digests at once: hashlib releases the GIL, so two cores share the work.
        with ThreadPoolExecutor(2) as pool:
            sha256, sha512 = pool.map(lambda a: _digest(work / name, a), ("sha256", "sha512"))
        digests = Digests(sha256, sha512, (work / name).stat().st_size)
        if key is not None:
            files = sidecars(name, digests, key)
        else:
            files = {
                name + ".sha256": tree.checksum_line(digests.sha256, name).encode(),
                name + ".sha512": tree.checksum_line(digests.sha512, name).encode(),
            }
        for sidecar, data in files.items():
            (work / sidecar).write_bytes(data)
        for sidecar in files:
            os.replace(work / sidecar, dest_dir / sidecar)
        os.replace(work / name, dest_dir / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest_dir / name


def _digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind through every `finally`, so temporary files and directories go with the process.
    raise SystemExit(128 + signum)


def installer_digest(
    config: Config,
    schematic: Schematic,
    version: TalosVersion,
    *,
    platform: str | None,
    secureboot: bool,
    v2_root: Path | None,
) -> str:
    """The digest of the tagged installer in the registry if its signature verifies, else a new
    push; with `v2_root` (no registry), the installer laid out as a static v2 tree there."""
    if v2_root is not None:
        image = installer_image(
            config, schematic, version, platform=platform, secureboot=secureboot
        )
        write_v2_tree(image, v2_root, schematic.id, version.tag)
        return image.digest
    registry = config.registry
    if registry is None or registry.signing_key is None:
        raise InvalidInput("no registry with a signing key is configured")
    repository = registry.repository(f"{image_name(platform, secureboot)}/{schematic.id}")
    username, password = registry.username, registry.password()
    if username is None:
        username, password = registry_credentials(registry.host) or (None, None)
    target = RegistryTarget(
        registry.host, insecure=registry.insecure, username=username, password=password
    )
    try:
        try:
            digest = target.resolve(repository, version.tag).digest
            verifier = Verifier.with_public_key(load_private_key(registry.signing_key).public_key())
            verifier.verify(target, repository, digest, f"{registry.host}/{repository}")
            return digest
        except (NotFound, SignatureError) as exc:
            # Missing, or a signature that does not verify: build and push again, never serve it.
            print(f"rebuilding {repository}:{version.tag}: {one_line(str(exc))}", file=sys.stderr)
        pushed = push_installer(
            config, schematic, version, platform=platform, secureboot=secureboot, target=target
        )
        return pushed.digest
    finally:
        target.close()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="server.worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--external-url")
    kinds = parser.add_subparsers(dest="kind", required=True)
    asset = kinds.add_parser("asset")
    asset.add_argument("--schematic", required=True)
    asset.add_argument("--version", required=True)
    asset.add_argument("--asset", required=True)
    asset.add_argument("--dest", required=True, type=Path)
    installer = kinds.add_parser("installer")
    installer.add_argument("--schematic", required=True)
    installer.add_argument("--version", required=True)
    installer.add_argument("--platform")
    installer.add_argument("--secureboot", action="store_true")
    installer.add_argument("--v2-root", type=Path, help="no registry: write a static v2 tree here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    # Its own process group: the server stops the build and every tool it started at once.
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        config = load_config(args.config)
        if args.external_url:
            config = dataclasses.replace(config, external_url=args.external_url)
        schematic = read_schematic(args.schematic)
        version = TalosVersion.parse(args.version)
        result: dict[str, object] = {"status": 200}
        if args.kind == "asset":
            key_path = config.publish_signing_key
            key = load_private_key(key_path) if key_path is not None else None
            built = build_asset(config, schematic, version, args.asset)
            place(built, args.dest, args.asset, key)
        else:
            result["digest"] = installer_digest(
                config,
                schematic,
                version,
                platform=args.platform,
                secureboot=args.secureboot,
                v2_root=args.v2_root,
            )
        code = 0
    except FactoryError as exc:
        result = {"status": exc.http_status, "error": one_line(str(exc))}
        code = exc.exit_code
    except OSError as exc:
        result = {"status": 500, "error": one_line(f"{exc.strerror or exc}")}
        code = 1
    print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
