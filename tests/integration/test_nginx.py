"""deploy/nginx: Debian's nginx, unprivileged on 127.0.0.1, serving a published tree; curl and skopeo.

The v2 tree is made from the sample release's installer-base with the project's own OCI copy code,
in the layout the server's registry frontend reads: v2/<image>/<id>/{manifests,blobs}/<reference>.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import pytest

from imagefactory import tree
from imagefactory.oci import media
from imagefactory.oci.copy import copy_manifest
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor
from tests.integration.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
VANILLA = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
VERSION = "v1.11.5"
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"
NOBODY = 65534


def load_tool() -> ModuleType:
    path = REPO / "deploy/nginx/imagefactory_nginx.py"
    spec = importlib.util.spec_from_file_location("imagefactory_nginx", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = load_tool()


class V2Tree:
    """The Target half copy_manifest writes to: the static v2 tree, files named by reference."""

    def __init__(self, v2: Path) -> None:
        self.v2 = v2
        self.name = f"v2-tree:{v2}"

    def has_blob(self, repository: str, digest: str) -> bool:
        return (self.v2 / repository / "blobs" / digest).is_file()

    def push_blob(self, repository: str, source: Path, digest: str | None = None) -> str:
        dest = self.v2 / repository / "blobs" / str(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        return str(digest)

    def put_manifest(
        self, repository: str, data: bytes, media_type: str, tag: str | None = None
    ) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        manifests = self.v2 / repository / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        for name in {digest, tag or digest}:
            (manifests / name).write_bytes(data)
        return Descriptor(media_type=media_type, digest=digest, size=len(data))


class Renamed:
    """The sample's installer-base, read as if it were installer/<id>."""

    def __init__(self, layout: LayoutTarget, repository: str) -> None:
        self.layout = layout
        self.repository = repository
        self.name = layout.name

    def get_manifest(self, repository: str, reference: str) -> tuple[Descriptor, bytes]:
        return self.layout.get_manifest(self.repository, reference)

    def fetch_blob(self, repository: str, digest: str, dest: Path) -> None:
        self.layout.fetch_blob(self.repository, digest, dest)

    def open_blob(self, repository: str, digest: str) -> BinaryIO:
        return self.layout.open_blob(self.repository, digest)


def make_tree(generation: Path, sample: Path) -> dict[str, Any]:
    """A generation with a file of every kind the static tree has, and one installer in v2/."""
    files = {
        tree.image_path(VANILLA, VERSION, "metal-amd64.iso"): b"iso bytes",
        tree.image_path(VANILLA, VERSION, "initramfs-amd64.xz"): b"xz bytes",
        tree.image_path(VANILLA, VERSION, "kernel-amd64"): b"kernel bytes",
        tree.image_path(VANILLA, VERSION, "metal-amd64-uki.efi"): b"efi bytes",
        tree.image_path(VANILLA, VERSION, "metal-amd64.raw.zst"): b"zst bytes",
        tree.image_path(VANILLA, VERSION, "kernel-amd64.sha256"): b"abc  kernel-amd64\n",
        tree.image_path(VANILLA, VERSION, "kernel-amd64.sig"): b"signature",
        tree.pxe_path(VANILLA, VERSION, "metal-amd64"): b"#!ipxe\n",
        tree.schematic_path(VANILLA): b"customization: {}\n",
        tree.VERSIONS: b'["v1.11.5"]',
        tree.extensions_path(VERSION): b"[]",
        tree.overlays_path(VERSION): b"[]",
        tree.SIGNING_KEY: b"-----BEGIN PUBLIC KEY-----\n",
        "index.html": b"<html></html>",
        f"image/{VANILLA}/.hidden": b"never served",
    }
    for relative, data in files.items():
        (generation / relative).parent.mkdir(parents=True, exist_ok=True)
        (generation / relative).write_bytes(data)
    layout = LayoutTarget(sample / "oci")
    top = copy_manifest(
        Renamed(layout, "siderolabs/installer-base"),  # type: ignore[arg-type]
        V2Tree(generation / "v2"),  # type: ignore[arg-type]
        f"installer/{VANILLA}",
        VERSION,
        tag=VERSION,
    )
    return {"files": files, "installer": top}


def readable_by_all(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(scope="module")
def served(sample_release: Path) -> Iterator[dict[str, Any]]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    # Outside pytest's 0700 temporary root: the unprivileged nginx must reach the tree.
    base = Path(tempfile.mkdtemp(prefix="nginx-test-"))
    try:
        generation = base / "generations" / "1"
        made = make_tree(generation, sample_release.parent)
        assert TOOL.write_sidecars(generation) == 4  # tag + index by digest + 2 arch manifests
        (base / "public").symlink_to(generation.relative_to(base))
        prefix = base / "nginx"
        port = free_port()
        conf = TOOL.standalone(prefix, TOOL.server_block(str(base / "public"), f"127.0.0.1:{port}"))
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        (prefix / "nginx.conf").write_text(conf)
        readable_by_all(base)
        argv = [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
        if os.geteuid() == 0:
            for path in [prefix, *prefix.rglob("*")]:
                os.chown(path, NOBODY, NOBODY)
            argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while not answers(url + "/v2/"):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.1)
        yield {"url": url, "port": port, "base": base, "proc": proc, **made}
        proc.terminate()
        proc.wait(timeout=10)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def answers(url: str) -> bool:
    return (
        subprocess.run(
            ["curl", "-sf", "--max-time", "2", url], check=False, capture_output=True
        ).returncode
        == 0
    )


def curl(url: str, *extra: str) -> dict[str, Any]:
    """Status, headers (lower-case names) and body of one request made by curl."""
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "--max-time", "10", *extra, url],
        capture_output=True,
        check=True,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return {"status": int(lines[0].split()[1]), "headers": headers, "body": body}


def test_committed_conf_is_the_generated_one() -> None:
    committed = (REPO / "deploy/nginx/imagefactory.conf").read_text()
    assert committed == TOOL.server_block(), "run: python deploy/nginx/imagefactory_nginx.py conf"
    for ext, ctype in tree.CONTENT_TYPES.items():
        assert f'"{ctype}"' in committed and f" {ext.lstrip('.')}" in committed


def test_content_types_are_upstreams(served: dict[str, Any]) -> None:
    for relative in served["files"]:
        if not relative.startswith("image/") or "/." in relative:
            continue
        got = curl(served["url"] + "/" + relative)
        assert got["status"] == 200, relative
        assert got["headers"]["content-type"] == tree.content_type(relative), relative
        assert got["headers"]["cache-control"] == IMMUTABLE
        assert got["body"] == served["files"][relative]


@pytest.mark.parametrize(
    ("relative", "ctype", "cache"),
    [
        (tree.VERSIONS, "text/plain; charset=utf-8", SHORT),
        (tree.extensions_path(VERSION), "text/plain; charset=utf-8", SHORT),
        (tree.overlays_path(VERSION), "text/plain; charset=utf-8", SHORT),
        (tree.pxe_path(VANILLA, VERSION, "metal-amd64"), "text/plain; charset=utf-8", SHORT),
        (tree.schematic_path(VANILLA), "application/yaml", IMMUTABLE),
        (tree.SIGNING_KEY, tree.PEM, SHORT),
        ("index.html", "text/html", SHORT),
    ],
)
def test_types_and_cache_of_the_rest(
    served: dict[str, Any], relative: str, ctype: str, cache: str
) -> None:
    got = curl(served["url"] + "/" + relative)
    assert (got["status"], got["headers"]["content-type"]) == (200, ctype)
    assert got["headers"]["cache-control"] == cache
    assert got["headers"]["x-content-type-options"] == "nosniff"
    assert got["body"] == served["files"][relative]


@pytest.mark.parametrize(
    "relative",
    [
        "image/",
        f"image/{VANILLA}/",
        f"image/{VANILLA}/{VERSION}/",
        "schematics/",
        f"v2/installer/{VANILLA}/manifests/",
        f"v2/installer/{VANILLA}/blobs/",
        f"image/{VANILLA}/.hidden",
        f"v2/installer/{VANILLA}/.manifests/{VERSION}/",
        f"v2/installer/{VANILLA}/manifests/v9.9.9",
        f"v2/installer/{VANILLA}/blobs/sha256:{'0' * 64}",
        f"image/{VANILLA}/{VERSION}/missing",
    ],
)
def test_no_listings_no_hidden_names(served: dict[str, Any], relative: str) -> None:
    got = curl(served["url"] + "/" + relative)
    assert got["status"] in {403, 404}, relative
    assert VANILLA.encode() not in got["body"] and b"Index of" not in got["body"]


def test_sidecar_file_not_reachable_directly(served: dict[str, Any]) -> None:
    digest = served["installer"].digest
    sidecar = f"v2/installer/{VANILLA}/.manifests/{VERSION}/oci-index,{digest}"
    assert (served["base"] / "public" / sidecar).is_file()
    assert curl(served["url"] + "/" + sidecar)["status"] == 404


def test_registry_headers(served: dict[str, Any]) -> None:
    url, top = served["url"], served["installer"]
    ping = curl(url + "/v2/")
    assert ping["headers"]["docker-distribution-api-version"] == "registry/2.0"
    by_tag = curl(f"{url}/v2/installer/{VANILLA}/manifests/{VERSION}")
    assert by_tag["status"] == 200
    assert by_tag["headers"]["content-type"] == top.media_type == media.OCI_INDEX
    assert by_tag["headers"]["docker-content-digest"] == top.digest
    assert "sha256:" + hashlib.sha256(by_tag["body"]).hexdigest() == top.digest
    assert by_tag["headers"]["cache-control"] == SHORT
    head = curl(f"{url}/v2/installer/{VANILLA}/manifests/{VERSION}", "-I")
    assert head["headers"]["docker-content-digest"] == top.digest
    assert int(head["headers"]["content-length"]) == top.size
    index = json.loads(by_tag["body"])
    for child in index["manifests"]:
        got = curl(f"{url}/v2/installer/{VANILLA}/manifests/{child['digest']}")
        assert got["headers"]["content-type"] == child["mediaType"]
        assert got["headers"]["docker-content-digest"] == child["digest"]
        assert got["headers"]["cache-control"] == IMMUTABLE
        layer = json.loads(got["body"])["layers"][0]["digest"]
        blob = curl(f"{url}/v2/installer/{VANILLA}/blobs/{layer}")
        assert blob["headers"]["docker-content-digest"] == layer
        assert blob["headers"]["cache-control"] == IMMUTABLE
        assert "sha256:" + hashlib.sha256(blob["body"]).hexdigest() == layer


def test_skopeo_copies_the_installer(served: dict[str, Any], tmp_path: Path) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    source = f"docker://127.0.0.1:{served['port']}/installer/{VANILLA}:{VERSION}"
    env = {**os.environ, "HOME": str(tmp_path)}
    common = ["--src-tls-verify=false"]
    subprocess.run(
        ["skopeo", "copy", "--all", "--preserve-digests", *common, source, f"oci:{tmp_path}/out:x"],
        check=True,
        env=env,
        capture_output=True,
    )
    copied = json.loads((tmp_path / "out/index.json").read_text())["manifests"][0]
    assert copied["digest"] == served["installer"].digest
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", *["--tls-verify=false"], source],
        check=True,
        env=env,
        capture_output=True,
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == served["installer"].digest


def test_a_new_generation_is_served_at_once(served: dict[str, Any]) -> None:
    base = served["base"]
    second = base / "generations" / "2"
    shutil.copytree(base / "generations" / "1", second, symlinks=True)
    (second / tree.VERSIONS).write_bytes(b'["v1.11.5","v1.12.0"]')
    readable_by_all(second)
    (base / "public.new").symlink_to(second.relative_to(base))
    (base / "public.new").replace(base / "public")
    assert curl(served["url"] + "/versions")["body"] == b'["v1.11.5","v1.12.0"]'
