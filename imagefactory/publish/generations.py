"""Nix-style generations of the published tree: hard links into the content store, switched atomically.

store/generations/<N>/ is generation N's whole tree, <N>.json its manifest (tree path -> sha256 per
cell and for the site files), <N>.keys.json the cell keys the planner compares, <N>.report.json what
the run that made it did. `public` is a symlink to the current generation, replaced by a rename: a
reader sees the old tree or the new one, and a run killed at any moment leaves the old one serving.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagefactory.config import Config
from imagefactory.errors import InvalidInput, NotFound
from imagefactory.files import write_atomic
from imagefactory.publish.content import ContentStore

MANIFEST_FORMAT = 1


def generations_dir(config: Config) -> Path:
    return config.store / "generations"


def _name(number: int) -> str:
    return f"{number:06d}"


@dataclass(frozen=True)
class Generation:
    number: int
    root: Path  # the tree

    @property
    def manifest_path(self) -> Path:
        return self.root.with_name(f"{self.root.name}.json")

    @property
    def keys_path(self) -> Path:
        return self.root.with_name(f"{self.root.name}.keys.json")

    @property
    def report_path(self) -> Path:
        return self.root.with_name(f"{self.root.name}.report.json")

    def manifest(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.manifest_path.read_bytes())
        return loaded

    def report(self) -> dict[str, Any] | None:
        try:
            loaded: dict[str, Any] = json.loads(self.report_path.read_bytes())
        except FileNotFoundError:
            return None
        return loaded


def generation(config: Config, number: int) -> Generation:
    return Generation(number, generations_dir(config) / _name(number))


def complete_generations(config: Config) -> list[Generation]:
    """Every generation whose tree and manifest were both written, oldest first."""
    found = []
    base = generations_dir(config)
    for path in sorted(base.glob("[0-9]" * 6)) if base.is_dir() else ():
        gen = Generation(int(path.name), path)
        if path.is_dir() and gen.manifest_path.is_file():
            found.append(gen)
    return found


def current(config: Config) -> Generation | None:
    """The generation `public` points at, or None (nothing published yet)."""
    public = config.public
    try:
        target = os.readlink(public)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise InvalidInput(
                f"{public} is a directory, not a link to a generation: move it away and publish again"
            ) from None
        raise
    root = (public.parent / target).resolve()
    try:
        number = int(root.name)
    except ValueError:
        raise InvalidInput(f"{public} points at {target}, which is not a generation") from None
    gen = Generation(number, root)
    return gen if gen.manifest_path.is_file() else None


def current_keys(config: Config) -> dict[str, Any]:
    """The current generation's cell keys and site key ({} when nothing is published)."""
    gen = current(config)
    if gen is None:
        return {}
    loaded: dict[str, Any] = json.loads(gen.keys_path.read_bytes())
    return loaded


@contextmanager
def publish_lock(config: Config) -> Iterator[None]:
    """One publisher (or rollback, or gc) at a time."""
    base = generations_dir(config)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EMLINK):
            raise
        shutil.copyfile(source, dest)


def switch(config: Config, gen: Generation) -> None:
    """Point `public` at `gen` in one rename (the link is relative, so the directory can move)."""
    public = config.public
    public.parent.mkdir(parents=True, exist_ok=True)
    if public.exists() and not public.is_symlink():
        raise InvalidInput(
            f"{public} is a directory, not a link to a generation: move it away and publish again"
        )
    tmp = public.with_name(f".{public.name}.switch-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(gen.root, public.parent), tmp)
    os.replace(tmp, public)


def _remove_partial(config: Config) -> None:
    """Trees a killed publish left behind (never switched to: no manifest, or a temporary name)."""
    base = generations_dir(config)
    for path in base.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)


def assemble(
    config: Config,
    files: Mapping[str, str],
    manifest: Mapping[str, Any],
    keys: Mapping[str, Any],
    report: Mapping[str, Any],
    *,
    finish: Callable[[Path], object] | None = None,
) -> Generation:
    """Write a new generation (tree path -> sha256 hex) and its records, then switch to it.

    `finish` adds what is made from the assembled tree itself (the web UI), before the generation
    takes its name: a failure there leaves a partial directory the next publish removes.
    """
    store = ContentStore(config)
    _remove_partial(config)
    existing = sorted(generations_dir(config).glob("[0-9]" * 6))
    number = int(existing[-1].name) + 1 if existing else 1
    gen = generation(config, number)
    tmp = generations_dir(config) / f".tmp-{_name(number)}-{os.getpid()}"
    tmp.mkdir(parents=True)
    made: set[Path] = set()
    for path, hex_digest in sorted(files.items()):
        dest = tmp / path
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        _link(store.path(hex_digest), dest)
    if finish is not None:
        finish(tmp)
    os.replace(tmp, gen.root)
    write_atomic(gen.keys_path, json.dumps({**keys, "generation": number}, sort_keys=True).encode())
    write_atomic(gen.report_path, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    # The manifest last: a generation without one is incomplete and never switched to.
    full = {
        "format": MANIFEST_FORMAT,
        "generation": number,
        "created": int(time.time()),
        **manifest,
    }
    write_atomic(gen.manifest_path, json.dumps(full, sort_keys=True).encode())
    switch(config, gen)
    return gen


def rollback(config: Config, to: int | None = None) -> Generation:
    """Switch `public` to generation `to`, or to the newest one older than the current."""
    with publish_lock(config):
        gens = complete_generations(config)
        now = current(config)
        if to is not None:
            chosen = next((g for g in gens if g.number == to), None)
            if chosen is None:
                raise NotFound(f"generation {to} does not exist")
        else:
            older = [g for g in gens if now is None or g.number < now.number]
            if not older:
                raise InvalidInput("no older generation to roll back to")
            chosen = older[-1]
        switch(config, chosen)
        return chosen


def _manifest_digests(gen: Generation) -> set[str]:
    manifest = gen.manifest()
    digests = set(manifest.get("site", {}).get("files", {}).values())
    for cell in manifest.get("cells", {}).values():
        digests.update(cell["files"].values())
    return digests


@dataclass(frozen=True)
class Collected:
    generations: tuple[int, ...]
    files: int
    bytes: int


def gc(config: Config, keep: int) -> Collected:
    """Keep the `keep` newest generations and the current one; drop the rest, then every store
    entry only they referenced (and the build-cache entries that were the same files)."""
    if keep < 1:
        raise InvalidInput("gc --keep must be at least 1")
    with publish_lock(config):
        _remove_partial(config)
        gens = complete_generations(config)
        now = current(config)
        kept = {g.number for g in gens[-keep:]} | ({now.number} if now else set())
        dropped = [g for g in gens if g.number not in kept]
        if not dropped:
            return Collected((), 0, 0)
        live: set[str] = set()
        for g in gens:
            if g.number in kept:
                live |= _manifest_digests(g)
        dead: set[str] = set()
        for g in dropped:
            dead |= _manifest_digests(g)
        dead -= live
        for g in dropped:
            for path in (g.manifest_path, g.keys_path, g.report_path):
                path.unlink(missing_ok=True)
            shutil.rmtree(g.root)
        store = ContentStore(config)
        inodes: set[tuple[int, int]] = set()
        freed = files = 0
        for hex_digest in sorted(dead):
            path = store.path(hex_digest)
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            if info.st_nlink > 1:
                inodes.add((info.st_dev, info.st_ino))
            path.unlink()
            freed += info.st_size
            files += 1
        _drop_builds(config, inodes)
        return Collected(tuple(g.number for g in dropped), files, freed)


def _drop_builds(config: Config, inodes: set[tuple[int, int]]) -> None:
    """Build-cache entries whose output was one of the collected store files."""
    builds = config.store / "builds"
    if not inodes or not builds.is_dir():
        return
    for entry in builds.iterdir():
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        for file in entry.iterdir():
            info = file.lstat()
            if (info.st_dev, info.st_ino) in inodes:
                shutil.rmtree(entry, ignore_errors=True)
                break
