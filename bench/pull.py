"""Benchmark: pull and push a large blob with our client against a local registry, beside skopeo.

Prints MiB/s for each, and the peak RSS of a child process doing only our pull (or push).
Run: .venv/bin/python bench/pull.py [--size-mib 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from imagefactory.oci import media
from imagefactory.oci.digest import sha256_file
from imagefactory.oci.model import Descriptor, canonical_json
from imagefactory.oci.registry import RegistryTarget
from imagefactory.store import Store

REPO = "bench/ours"


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_registry(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = work / "registry.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench-only\n"
    )
    with (work / "registry.log").open("wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).ok:
                return proc, f"127.0.0.1:{port}"
        except requests.ConnectionError:
            time.sleep(0.02)
    proc.terminate()
    raise SystemExit(f"docker-registry did not start: {(work / 'registry.log').read_text()}")


def make_blob(path: Path, size_mib: int) -> None:
    with path.open("wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))


def child(argv: list[str]) -> None:
    """Runs in its own process so that its peak RSS is ours alone."""
    mode, host, arg, digest = argv
    target = RegistryTarget(host, insecure=True)
    start = time.perf_counter()
    if mode == "pull":
        Store(Path(arg)).fetch(target, REPO, digest)
    else:
        target.push_blob(REPO, Path(arg), digest)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "vm_hwm_mib": vm_hwm_mib()}))


def run_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env={**os.environ, **env})
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=500)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench needs {tool} (apt-get install docker-registry skopeo)")
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        blob = tmp / "blob.tar"
        make_blob(blob, args.size_mib)
        digest, size = sha256_file(blob)
        mib = size / (1 << 20)
        proc_a, host_a = start_registry(tmp / "a")
        proc_b, host_b = start_registry(tmp / "b")
        try:
            push = run_child("push", host_a, str(blob), digest)
            # An image holding the blob as its only layer, so skopeo can copy it.
            target = RegistryTarget(host_a, insecure=True)
            config = canonical_json(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [digest]},
                }
            )
            config_digest = target.push_blob_bytes(REPO, config)
            manifest = {
                "schemaVersion": 2,
                "mediaType": media.OCI_MANIFEST,
                "config": Descriptor(media.OCI_CONFIG, config_digest, len(config)).to_json(),
                "layers": [Descriptor(media.OCI_LAYER_TAR, digest, size).to_json()],
            }
            target.put_manifest(REPO, canonical_json(manifest), media.OCI_MANIFEST, tag="v1")
            pull = run_child("pull", host_a, str(tmp / "store"), digest)
            env = {"HOME": str(tmp / "home")}
            skopeo_pull = timed(
                [
                    "skopeo",
                    "copy",
                    "--src-tls-verify=false",
                    f"docker://{host_a}/{REPO}:v1",
                    f"dir:{tmp / 'skopeo-dir'}",
                ],
                env,
            )
            # A second, empty registry: skopeo can't skip the upload by mounting or HEAD.
            skopeo_push = timed(
                [
                    "skopeo",
                    "copy",
                    "--dest-tls-verify=false",
                    f"dir:{tmp / 'skopeo-dir'}",
                    f"docker://{host_b}/bench/skopeo:v1",
                ],
                env,
            )
        finally:
            for proc in (proc_a, proc_b):
                proc.terminate()
                proc.wait(timeout=10)
    rows = [
        ("pull", mib / pull["seconds"], mib / skopeo_pull, pull["vm_hwm_mib"]),
        ("push", mib / push["seconds"], mib / skopeo_push, push["vm_hwm_mib"]),
    ]
    print(f"blob: {mib:.0f} MiB random, uncompressed; registry: docker-registry on loopback")
    print(f"{'op':<6}{'ours MiB/s':>12}{'skopeo MiB/s':>14}{'ratio':>8}{'our peak RSS MiB':>18}")
    for op, ours, theirs, rss in rows:
        print(f"{op:<6}{ours:>12.1f}{theirs:>14.1f}{ours / theirs:>8.2f}{rss:>18.1f}")
    ok = all(ours >= 0.8 * theirs and rss < 100 for _, ours, theirs, rss in rows)
    print("targets (>= 80% of skopeo, < 100 MiB RSS):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
