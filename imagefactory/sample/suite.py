"""Packages from another Debian suite (e.g. trixie) without touching the machine's apt state.

The mirror is the one the machine's own apt sources name; apt runs with private lists and cache.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from imagefactory import tools
from imagefactory.errors import BuildError

APT_DIR = Path("/etc/apt")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _deb822_uris(text: str) -> list[str]:
    uris = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.MULTILINE))
        if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
            uris.extend(fields.get("URIs", "").split())
    return uris


def _one_line_uris(text: str) -> list[str]:
    uris = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            uris.append(words[1])
    return uris


def machine_mirror(apt_dir: Path = APT_DIR) -> str:
    """The Debian archive the machine's apt sources use (not its security archive)."""
    uris: list[str] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        uris += _deb822_uris(path.read_text(errors="replace"))
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.is_file():
            uris += _one_line_uris(path.read_text(errors="replace"))
    for uri in uris:
        if "security" not in uri and uri.startswith(("http://", "https://", "file:")):
            return uri.rstrip("/")
    raise BuildError(f"no Debian mirror found in the apt sources under {apt_dir}")


def download(suite: str, packages: Sequence[str], dest: Path, *, apt_dir: Path = APT_DIR) -> None:
    """`apt-get download PKG[:arch]/suite` of each package into dest, from private apt state."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"apt-{suite}-") as tmp:
        work = Path(tmp)
        for sub in ("lists/partial", "cache/archives/partial"):
            (work / sub).mkdir(parents=True)
        (work / "sources.list").write_text(
            f"deb [signed-by={KEYRING}] {machine_mirror(apt_dir)} {suite} main\n"
        )
        options = [
            f"-oDir::Etc::SourceList={work / 'sources.list'}",
            "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={work / 'lists'}",
            f"-oDir::Cache={work / 'cache'}",
            "-oDir::State::status=/var/lib/dpkg/status",
            "-oAPT::Sandbox::User=root",
        ]
        tools.run(["apt-get", *options, "-q", "update"])
        for package in packages:
            tools.run(["apt-get", *options, "-q", "download", f"{package}/{suite}"], cwd=dest)
