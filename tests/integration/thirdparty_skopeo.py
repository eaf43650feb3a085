"""Obtain Debian trixie's skopeo 1.18 (sigstore enabled) as an independent signature verifier.

Downloaded once with apt-get into a private apt state and run through trixie's own loader.
"""

from __future__ import annotations

import fcntl
import os
import platform
import pwd
import shutil
import tempfile
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import FactoryError
from imagefactory.sample import suite

# NEEDED of trixie's skopeo is libgpgme, libsqlite3 and libc; libgpgme pulls in the other two.
PACKAGES = ("skopeo", "libc6", "libgpgme11t64", "libassuan9", "libgpg-error0", "libsqlite3-0")
LOADERS = {
    "x86_64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
    "aarch64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
}
WRAPPER = "skopeo-1.18"


class Unavailable(Exception):
    """The verifier could not be obtained; the message is the skip reason."""


def cache_dir() -> Path:
    # The integration conftest points $HOME at a temporary directory; the cache must outlive it.
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    base = os.environ.get("XDG_CACHE_HOME") or str(home / ".cache")
    return Path(base) / "imagefactory" / "skopeo-trixie"


def _works(wrapper: Path) -> bool:
    try:
        out = tools.run([wrapper, "--version"])
    except FactoryError:
        return False
    return b"skopeo version" in out


def _download(work: Path) -> None:
    machine = platform.machine()
    if machine not in LOADERS:
        raise Unavailable(f"no trixie loader known for machine {machine!r}")
    triplet, loader = LOADERS[machine]
    # The mirror comes from the machine's own apt sources, never from this file.
    suite.download("trixie", PACKAGES, work / "dl")
    root = work / "root"
    for deb in sorted((work / "dl").glob("*.deb")):
        tools.run(["dpkg-deb", "-x", deb, root])
    libdir = root / "usr" / "lib" / triplet
    (work / WRAPPER).write_text(
        f'#!/bin/sh\nexec "{libdir / loader}" --library-path "{libdir}" '
        f'"{root / "usr" / "bin" / "skopeo"}" "$@"\n'
    )
    (work / WRAPPER).chmod(0o755)
    shutil.rmtree(work / "dl")


def obtain() -> Path:
    """Return the path of a working skopeo 1.18 wrapper; raise Unavailable with the reason."""
    final = cache_dir()
    wrapper = final / WRAPPER
    if _works(wrapper):
        return wrapper
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise Unavailable("apt-get/dpkg-deb are not available to download trixie's skopeo")
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / "skopeo-trixie.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _works(wrapper):
            return wrapper
        work = Path(tempfile.mkdtemp(prefix=".skopeo-trixie-", dir=final.parent))
        try:
            try:
                _download(work)
            except FactoryError as exc:
                raise Unavailable(f"downloading skopeo from Debian trixie failed: {exc}") from exc
            # The wrapper holds absolute paths, so it has to be rewritten for the final place.
            text = (work / WRAPPER).read_text().replace(str(work), str(final))
            (work / WRAPPER).write_text(text)
            if final.exists():
                shutil.rmtree(final)
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if not _works(wrapper):
        raise Unavailable(f"trixie skopeo at {wrapper} does not run on this system")
    return wrapper


if __name__ == "__main__":
    print(obtain())
