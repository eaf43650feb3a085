"""Upstream's HTTP API with real clients: bytes, statuses, headers, Range and conditional requests,
on-demand assets equal to the CLI's, and the published generation served first."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from email.utils import formatdate
from pathlib import Path

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from serving import VANILLA, Served, curl, post_schematic

from imagefactory import tree
from imagefactory.config import load_config
from imagefactory.schematic import parse_schematic
from imagefactory.signing.keys import (
    load_private_key,
    public_key_pem,
)

EXTENSIONS = """\
customization:
  extraKernelArgs:
    - console=ttyS0
  systemExtensions:
    officialExtensions:
      - siderolabs/iscsi-tools
"""


def cli(*args: str) -> bytes:
    result = subprocess.run(
        [sys.executable, "-m", "imagefactory", *args], capture_output=True, check=True
    )
    return result.stdout


def test_post_schematic_answers_upstreams_bytes(served: Served) -> None:
    answer = requests.post(served.url + "/schematics", data=b"{}", timeout=30)
    assert answer.status_code == 201
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.content == (
        b'{"id":"' + VANILLA.encode() + b'","schematic":"customization: {}\\n"}\n'
    )
    assert answer.headers["X-Request-Id"]
    got = served.get(f"/schematics/{VANILLA}")
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "application/yaml"
    assert got.content == b"customization: {}\n"
    # Stored content-addressed on disk, as upstream stores them by ID.
    assert (served.store / "schematics" / VANILLA).read_bytes() == b"customization: {}\n"


def test_schematic_lookup_404s(served: Served) -> None:
    for missing in ("0" * 64, "not-an-id"):
        got = served.get(f"/schematics/{missing}")
        assert got.status_code == 404
        assert got.text == "schematic not found\n"
        assert got.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert got.headers["X-Content-Type-Options"] == "nosniff"
    got = served.get(f"/image/{'0' * 64}/v1.11.5/kernel-amd64")
    assert (got.status_code, got.text) == (404, f'schematic ID "{"0" * 64}" not found\n')


def test_catalogs_from_the_lock(served: Served) -> None:
    got = served.get("/versions")
    assert got.content == b'["v1.7.7","v1.11.5"]\n'
    lock = json.loads((served.config.parent / "sources.lock.json").read_text())
    extensions = served.get("/version/1.11.5/extensions/official").json()
    assert [e["name"] for e in extensions] == sorted(lock["versions"]["v1.11.5"]["extensions"])
    first = extensions[0]
    locked = lock["versions"]["v1.11.5"]["extensions"][first["name"]]
    assert first == {k: locked[k] for k in ("ref", "digest", "author", "description")} | {
        "name": first["name"]
    }
    overlays = served.get("/version/v1.11.5/overlays/official").json()
    assert [o["name"] for o in overlays] == ["rpi_generic"]
    assert served.get("/version/v1.8.0/extensions/official").status_code == 404
    assert served.get("/version/1.10/extensions/official").status_code == 400


def test_health_metrics_cors(served: Served) -> None:
    assert served.get("/healthz").status_code == 200
    assert served.get("/readyz").status_code == 200
    served.get("/versions")
    metrics = served.get("/metrics").text
    assert 'imagefactory_http_requests_total{method="GET",route="versions",status="200"}' in metrics
    got = served.get("/versions", headers={"Origin": "https://example.test"})
    assert got.headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Disposition" in got.headers["Access-Control-Expose-Headers"]
    preflight = requests.options(
        served.url + "/versions",
        headers={"Origin": "https://x.test", "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET"


def test_pxe_script_is_upstreams(served: Served, tmp_path: Path) -> None:
    schematic_id = post_schematic(served, EXTENSIONS)
    (tmp_path / "s.yaml").write_text(EXTENSIONS)
    cmdline = cli(
        "cmdline", "--config", str(served.config), "--version", "v1.11.5",
        "--platform", "metal", "--arch", "amd64", "--schematic", str(tmp_path / "s.yaml"),
    ).decode().strip()  # fmt: skip
    base = f"{served.url}/image/{schematic_id}/v1.11.5"
    expected = (
        f"#!ipxe\n\nimgfree\nkernel {base}/kernel-amd64 {cmdline}\n"
        f"initrd {base}/initramfs-amd64.xz\nboot\n"
    ).encode()
    for arch in ("amd64", "x86_64", "i386"):
        got = served.get(f"/pxe/{schematic_id}/1.11.5/metal-{arch}")
        assert got.status_code == 200, got.text
        assert got.content == expected
        assert got.headers["Content-Type"] == "text/plain; charset=utf-8"
    bad = served.get(f"/pxe/{schematic_id}/1.11.5/metal-sparc")
    assert (bad.status_code, bad.text) == (
        400,
        'error parsing profile from path: invalid architecture: "sparc"\n',
    )


def test_on_demand_assets_equal_the_cli_build(served: Served, tmp_path: Path) -> None:
    schematic_id = post_schematic(served, EXTENSIONS)
    (tmp_path / "s.yaml").write_text(EXTENSIONS)
    url = f"{served.url}/image/{schematic_id}/v1.11.5/initramfs-amd64.xz"
    got = requests.get(url, timeout=300)
    assert got.status_code == 200, got.text
    assert got.headers["Content-Type"] == "application/x-xz"
    assert got.headers["Content-Disposition"] == 'attachment; filename="initramfs-amd64.xz"'
    cli(
        "build", "--config", str(served.config), "--schematic", str(tmp_path / "s.yaml"),
        "--version", "v1.11.5", "--asset", "initramfs-amd64.xz", "--out", str(tmp_path),
    )  # fmt: skip
    assert got.content == (tmp_path / "initramfs-amd64.xz").read_bytes()
    digest = hashlib.sha256(got.content).hexdigest()
    sums = requests.get(url + ".sha256", timeout=30)
    assert sums.text == tree.checksum_line(digest, "initramfs-amd64.xz")
    sha512 = requests.get(url + ".sha512", timeout=30).text.split()[0]
    assert sha512 == hashlib.sha512(got.content).hexdigest()
    # Signed with the publish key, as the pipeline signs published files (cosign sign-blob).
    key_path = load_config(served.config).publish_signing_key
    assert key_path is not None
    signature = base64.b64decode(requests.get(url + ".sig", timeout=30).content)
    public = load_private_key(key_path).public_key()
    public.verify(
        signature, hashlib.sha256(got.content).digest(), ec.ECDSA(Prehashed(hashes.SHA256()))
    )
    named = requests.get(url + "?filename=boot.xz", timeout=30)
    assert named.headers["Content-Disposition"] == 'attachment; filename="boot.xz"'


def test_range_head_and_conditional_with_curl(served: Served, tmp_path: Path) -> None:
    url = f"{served.url}/image/{VANILLA}/v1.11.5/kernel-amd64"
    full = curl("-f", url).stdout
    head = curl("-fI", url).stdout.decode()
    headers = dict(line.split(": ", 1) for line in head.strip().splitlines()[1:] if ": " in line)
    assert int(headers["Content-Length"]) == len(full)
    etag, modified = headers["ETag"], headers["Last-Modified"]

    part = curl("-f", "-r", "100-199", "-D", str(tmp_path / "h"), url).stdout
    assert part == full[100:200]
    head_206 = (tmp_path / "h").read_text()
    assert " 206 " in head_206.splitlines()[0]
    assert f"Content-Range: bytes 100-199/{len(full)}" in head_206
    assert curl("-f", "-r", "-10", url).stdout == full[-10:]
    assert curl("-f", "-r", f"{len(full) - 5}-", url).stdout == full[-5:]
    # Resuming a download: curl -C asks for the rest.
    (tmp_path / "partial").write_bytes(full[:1000])
    curl("-f", "-C", "-", "-o", str(tmp_path / "partial"), url)
    assert (tmp_path / "partial").read_bytes() == full

    status = curl("-o", "/dev/null", "-w", "%{http_code}", "-r", f"{len(full)}-", url).stdout
    assert status == b"416"
    not_modified = ("-o", "/dev/null", "-w", "%{http_code}")
    assert curl(*not_modified, "-H", f"If-None-Match: {etag}", url).stdout == b"304"
    assert curl(*not_modified, "-H", f"If-Modified-Since: {modified}", url).stdout == b"304"
    assert curl(*not_modified, "-H", 'If-None-Match: "other"', url).stdout == b"200"
    old = formatdate(0, usegmt=True)
    assert curl(*not_modified, "-H", f"If-Modified-Since: {old}", url).stdout == b"200"
    # If-None-Match decides when both are sent.
    both = ("-H", 'If-None-Match: "other"', "-H", f"If-Modified-Since: {modified}")
    assert curl(*not_modified, *both, url).stdout == b"200"


def test_published_generation_first_and_switched_atomically(served: Served) -> None:
    public = served.config.parent / "public"
    relative = tree.image_path(VANILLA, "v1.7.7", "cmdline-metal-amd64")
    for generation, text in (("gen-1", b"published one\n"), ("gen-2", b"published two\n")):
        path = served.config.parent / generation / relative
        path.parent.mkdir(parents=True)
        path.write_bytes(text)
    url = f"/image/{VANILLA}/v1.7.7/cmdline-metal-amd64"
    os.symlink("gen-1", public)
    try:
        assert served.get(url).content == b"published one\n"
        # The pipeline's switch: a new symlink renamed over the old one.
        os.symlink("gen-2", served.config.parent / "public.new")
        os.replace(served.config.parent / "public.new", public)
        assert served.get(url).content == b"published two\n"
    finally:
        public.unlink()
    # Without a published tree the same URL is built on demand from the sample release.
    built = served.get(url)
    assert built.status_code == 200
    assert built.content.startswith(b"talos.platform=metal")
    assert not (
        served.config.parent / "gen-2" / "image" / VANILLA / "v1.7.7" / "kernel-amd64"
    ).exists()


def test_signing_key_is_the_public_half(served: Served) -> None:
    """Without a published tree: the public half of the key that signs on-demand files."""
    key_path = load_config(served.config).publish_signing_key
    assert key_path is not None
    got = served.get("/oci/cosign/signing-key.pub")
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "application/x-pem-file"
    assert got.content == public_key_pem(load_private_key(key_path))


def test_committed_schematics_are_found(served: Served) -> None:
    directory = served.config.parent / "schematics"
    directory.mkdir(exist_ok=True)
    (directory / "broken.yaml").write_text("customization: {nope: 1}\n")
    text = "customization:\n  extraKernelArgs:\n    - committed=1\n"
    (directory / "committed.yaml").write_text(text)
    schematic_id = parse_schematic(text.encode()).id
    got = served.get(f"/schematics/{schematic_id}")
    assert got.status_code == 200
    assert got.content == b"customization:\n    extraKernelArgs:\n        - committed=1\n"
    assert served.get(f"/image/{schematic_id}/v1.11.5/cmdline-metal-amd64").text.endswith(
        "committed=1"
    )


def test_web_ui_served_from_the_published_tree(served: Served) -> None:
    public = served.config.parent / "public"
    generation = served.config.parent / "gen-ui"
    (generation / "ui" / "static").mkdir(parents=True)
    (generation / "index.html").write_bytes(b"<!doctype html><title>wizard</title>\n")
    (generation / "ui" / "static" / "schematic.js").write_bytes(b"export const x = 1;\n")
    assert served.get("/").status_code == 404  # nothing published yet: no UI, no 500
    os.symlink("gen-ui", public)
    try:
        index = served.get("/")
        assert index.status_code == 200
        assert index.headers["Content-Type"] == "text/html; charset=utf-8"
        assert index.content == b"<!doctype html><title>wizard</title>\n"
        script = served.get("/ui/static/schematic.js")
        assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert script.content == b"export const x = 1;\n"
        assert served.get("/ui/static/missing.js").status_code == 404
        assert served.get("/ui/%2e%2e/index.html").status_code == 400
    finally:
        public.unlink()


def test_pxe_script_follows_a_generation_switch_and_a_rebuild(served: Served) -> None:
    """The script is cached per cmdline file: another generation, or a file renamed over the old
    one (same size and mtime, new inode), makes it again; without a published tree, on demand."""
    assert post_schematic(served, "customization: {}\n") == VANILLA
    public = served.config.parent / "public"
    relative = tree.image_path(VANILLA, "v1.7.7", "cmdline-metal-amd64")
    for generation, text in (("pxe-1", b"talos.gen=1\n"), ("pxe-2", b"talos.gen=2\n")):
        path = served.config.parent / generation / relative
        path.parent.mkdir(parents=True)
        path.write_bytes(text)
    url = f"/pxe/{VANILLA}/v1.7.7/metal-amd64"

    def kernel_args() -> str:
        got = served.get(url)
        assert got.status_code == 200, got.text
        kernel = next(line for line in got.text.splitlines() if line.startswith("kernel "))
        return kernel.split(" ", 2)[2]

    os.symlink("pxe-1", public)
    try:
        assert kernel_args() == kernel_args() == "talos.gen=1"
        os.symlink("pxe-2", served.config.parent / "public.new")
        os.replace(served.config.parent / "public.new", public)
        assert kernel_args() == "talos.gen=2"
        # A rebuild: new bytes of the same length and mtime, renamed into place.
        current = served.config.parent / "pxe-2" / relative
        before = current.stat()
        rebuilt = current.with_name("cmdline.new")
        rebuilt.write_bytes(b"talos.gen=3\n")
        os.utime(rebuilt, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(rebuilt, current)
        assert kernel_args() == "talos.gen=3"
    finally:
        public.unlink()
    assert kernel_args().startswith("talos.platform=metal")


def test_one_access_line_per_request(served: Served) -> None:
    """Method, path, status, body bytes, milliseconds and the request ID, on one line."""
    rid = "access-line-test-0001"
    got = served.get("/versions?probe=1", headers={"X-Request-Id": rid})
    assert got.headers["X-Request-Id"] == rid
    generated = served.get("/healthz?probe=2").headers["X-Request-Id"]
    assert generated != served.get("/healthz?probe=2").headers["X-Request-Id"]
    lines = served.log.read_text().splitlines()
    mine = [line for line in lines if line.endswith(f" {rid}")]
    assert len(mine) == 1, lines[-20:]
    fields = mine[0].split()
    assert fields[2:6] == ["GET", "/versions?probe=1", "200", str(len(got.content))]
    assert fields[6].endswith("ms") and float(fields[6].removesuffix("ms")) >= 0
    assert [line for line in lines if line.endswith(f" {generated}")] == [
        next(line for line in lines if "/healthz?probe=2 200 0 " in line)
    ]


def test_small_published_file_follows_a_rebuild(served: Served) -> None:
    """Small files are answered from memory only while the file has the identity they were read
    under: bytes renamed over them (same size and mtime) are read again, with a new ETag."""
    public = served.config.parent / "public"
    path = served.config.parent / "small-1" / tree.VERSIONS
    path.parent.mkdir(parents=True)
    path.write_bytes(b'["v1.11.5"]\n')
    os.symlink("small-1", public)
    try:
        first = served.get("/versions")
        assert first.content == served.get("/versions").content == b'["v1.11.5"]\n'
        before = path.stat()
        rebuilt = path.with_name("versions.new")
        rebuilt.write_bytes(b'["v1.7.77"]\n')
        os.utime(rebuilt, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(rebuilt, path)
        second = served.get("/versions")
        assert second.content == b'["v1.7.77"]\n'
        assert second.headers["ETag"] != first.headers["ETag"]
        assert served.get("/versions", headers={"Range": "bytes=2-8"}).content == b"v1.7.77"
    finally:
        public.unlink()
    assert served.get("/versions").content == b'["v1.7.7","v1.11.5"]\n'


def test_answers_follow_the_lock(served: Served) -> None:
    """A version taken out of the lock is 404 at once, however often it was answered before."""
    assert post_schematic(served, "customization: {}\n") == VANILLA
    lock_path = served.config.parent / "sources.lock.json"
    original = lock_path.read_bytes()
    urls = [
        f"/pxe/{VANILLA}/v1.11.5/metal-amd64",
        f"/image/{VANILLA}/v1.11.5/cmdline-metal-amd64",
    ]
    for url in urls * 3:
        assert served.get(url).status_code == 200
    lock = json.loads(original)
    del lock["versions"]["v1.11.5"]
    smaller = lock_path.with_name("lock.new")
    smaller.write_text(json.dumps(lock))
    os.replace(smaller, lock_path)
    try:
        for url in urls:
            got = served.get(url)
            assert (got.status_code, got.text) == (404, "version 1.11.5 is not available\n")
    finally:
        lock_path.write_bytes(original)
    for url in urls:
        assert served.get(url).status_code == 200


def test_a_plain_public_directory_is_read_afresh(served: Served) -> None:
    """Without a generation symlink a file may appear in `public` unseen by any stamp: answers
    are made afresh, and the published file wins as soon as it is there."""
    assert post_schematic(served, "customization: {}\n") == VANILLA
    url = f"/image/{VANILLA}/v1.7.7/cmdline-aws-amd64"
    built = served.get(url)
    assert built.status_code == 200
    assert served.get(url).content == built.content  # answered again from what was kept
    public = served.config.parent / "public"
    path = public / tree.image_path(VANILLA, "v1.7.7", "cmdline-aws-amd64")
    path.parent.mkdir(parents=True)
    try:
        assert served.get(url).content == built.content
        path.write_bytes(b"published in a plain directory\n")
        assert served.get(url).content == b"published in a plain directory\n"
    finally:
        shutil.rmtree(public)
    assert served.get(url).content == built.content
