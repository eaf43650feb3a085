"""The commands a user types: sample-release, lock, lock --check, versions, extensions.

Against the sample release as an OCI layout and pushed to a real registry; tampering is refused.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagefactory.cli import main
from imagefactory.signing import keys

VERSIONS = "v1.7.7,v1.11.5"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def layout_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release")
    assert main(["sample-release", "--out", str(out), "--versions", VERSIONS]) == 0
    return out


def fresh_copy(release: Path, tmp_path: Path) -> Path:
    """A private copy of the release, so a test may tamper with it."""
    copy = tmp_path / "release"
    shutil.copytree(release, copy, symlinks=True)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["sources"]["registry"] = f"oci-layout:{copy / 'oci'}"
    config["sources"]["verify"]["publicKey"] = str(copy / "cosign.pub")
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    return copy


CATALOG = "siderolabs/extensions"
REF_NAME = "org.opencontainers.image.ref.name"


def layout_entries(release: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((release / "oci/index.json").read_text())[
        "manifests"
    ]
    return entries


def blob(release: Path, digest: str) -> Path:
    return release / "oci/blobs/sha256" / digest.removeprefix("sha256:")


def catalog_manifest(release: Path, tag: str = "v1.11.5") -> tuple[str, dict[str, Any]]:
    """The digest and content of the amd64 manifest of the extensions catalog (read by lock)."""
    (entry,) = [
        e for e in layout_entries(release) if e["annotations"][REF_NAME] == f"{CATALOG}:{tag}"
    ]
    index = json.loads(blob(release, entry["digest"]).read_text())
    (amd64,) = [m for m in index["manifests"] if m["platform"]["architecture"] == "amd64"]
    manifest: dict[str, Any] = json.loads(blob(release, amd64["digest"]).read_text())
    return amd64["digest"], manifest


def lock_fails(release: Path, capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    code, _, err = cli(capsys, "lock", "--config", str(release / "config.yaml"))
    assert code == 1, err
    assert err.startswith("imagefactory: error: ") and len(err.strip().splitlines()) == 1, err
    assert CATALOG in err and all(text in err for text in expected), err
    assert not (release / "sources.lock.json").exists()
    return err


def test_catalog_layer_with_bytes_after_the_tar_end_is_refused(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = fresh_copy(layout_release, tmp_path)
    _, manifest = catalog_manifest(release)
    layer = blob(release, manifest["layers"][0]["digest"])
    # More than the reader buffers ahead (1 MiB), so tarfile is done long before EOF.
    layer.write_bytes(layer.read_bytes() + b"appended after the end of the archive" * 100_000)
    lock_fails(release, capsys, "digest mismatch", manifest["layers"][0]["digest"])


def test_catalog_layer_with_other_content_under_the_same_name_is_refused(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = fresh_copy(layout_release, tmp_path)
    _, manifest = catalog_manifest(release)
    layer = blob(release, manifest["layers"][0]["digest"])
    # A well-formed catalog that drops gvisor: only the digest can tell it is not the signed one.
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.read_bytes()))) as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        for member in src:
            data = src.extractfile(member)
            assert data is not None
            content = data.read()
            if member.name == "image-digests":
                lines = content.decode().splitlines(keepends=True)
                content = "".join(line for line in lines if "gvisor" not in line).encode()
                assert len(content) < member.size
            member.size = len(content)
            dst.addfile(member, io.BytesIO(content))
    # Noise after the archive's end makes the blob long enough that tarfile stops before EOF.
    noise = random.Random(0).randbytes(3 << 20)
    layer.write_bytes(gzip.compress(out.getvalue() + noise))
    lock_fails(release, capsys, "digest mismatch")


def test_tampered_catalog_manifest_is_refused(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = fresh_copy(layout_release, tmp_path)
    digest, manifest = catalog_manifest(release)
    manifest["annotations"] = {"tampered": "yes"}
    blob(release, digest).write_text(json.dumps(manifest))
    lock_fails(release, capsys, "manifest digest mismatch")


def test_signature_for_another_digest_is_refused(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The catalog's signature tag points at a signature, by the right key, of another image."""
    release = fresh_copy(layout_release, tmp_path)
    entries = layout_entries(release)
    (catalog,) = [e for e in entries if e["annotations"][REF_NAME] == f"{CATALOG}:v1.11.5"]
    sig_tag = f"{CATALOG}:{catalog['digest'].replace(':', '-')}.sig"
    (other,) = [
        e
        for e in entries
        if e["annotations"][REF_NAME].startswith(f"{CATALOG}:sha256-")
        and e["annotations"][REF_NAME] != sig_tag
        and e["digest"] != catalog["digest"]
    ][:1]
    (sig,) = [e for e in entries if e["annotations"][REF_NAME] == sig_tag]
    sig.update(digest=other["digest"], size=other["size"])
    index = json.loads((release / "oci/index.json").read_text())
    index["manifests"] = entries
    (release / "oci/index.json").write_text(json.dumps(index))
    lock_fails(release, capsys, "signature verification failed for")


def test_lock_versions_extensions_from_a_layout(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = fresh_copy(layout_release, tmp_path)
    config = str(release / "config.yaml")

    code, out, _ = cli(capsys, "versions", "--config", config)
    assert (code, out) == (0, "v1.7.7\nv1.11.5\n")  # from the source: no lock yet

    code, out, err = cli(capsys, "lock", "--config", config)
    assert code == 0, err
    lock = json.loads((release / "sources.lock.json").read_text())
    assert sorted(lock["versions"]) == ["v1.11.5", "v1.7.7"]
    # No machine paths in a lock meant to be committed: the layout beside it, the key's fingerprint.
    assert lock["source"]["registry"] == "oci-layout:oci"
    assert lock["source"]["verification"].startswith("public key sha256:")
    assert str(tmp_path) not in (release / "sources.lock.json").read_text()
    v11 = lock["versions"]["v1.11.5"]
    assert v11["installer"]["component"] == "siderolabs/installer-base"
    assert lock["versions"]["v1.7.7"]["installer"]["component"] == "siderolabs/installer"
    assert v11["imager"]["digest"].startswith("sha256:")
    assert all(e["verified"].startswith("public-key") for e in v11["extensions"].values())
    assert "rpi_generic" in v11["overlays"]
    assert "siderolabs/gvisor" in v11["extensions"]

    code, out, _ = cli(capsys, "lock", "--check", "--config", config)
    assert code == 0 and "up to date" in out

    code, out, _ = cli(capsys, "versions", "--config", config)
    assert out == "v1.7.7\nv1.11.5\n"
    code, out, _ = cli(capsys, "extensions", "1.11.5", "--config", config)
    names = out.splitlines()
    assert code == 0 and names == sorted(names) and "siderolabs/iscsi-tools" in names
    assert all(name.startswith("siderolabs/") for name in names)

    code, _, err = cli(capsys, "extensions", "v1.8.0", "--config", config)
    assert code == 2 and "version v1.8.0 is not available" in err


def test_lock_check_notices_a_changed_source(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = fresh_copy(layout_release, tmp_path)
    config = str(release / "config.yaml")
    assert cli(capsys, "lock", "--config", config)[0] == 0
    lock_path = release / "sources.lock.json"
    lock = json.loads(lock_path.read_text())
    lock["versions"]["v1.7.7"]["imager"]["digest"] = "sha256:" + "0" * 64
    lock_path.write_text(json.dumps(lock))
    code, out, err = cli(capsys, "lock", "--check", "--config", config)
    assert code == 1
    assert "versions.v1.7.7.imager.digest" in out and "out of date" in err


def test_signature_by_another_key_is_refused_and_nothing_is_locked(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = fresh_copy(layout_release, tmp_path)
    keys.save_public_key(keys.generate_key(), release / "cosign.pub")
    code, _, err = cli(capsys, "lock", "--config", str(release / "config.yaml"))
    assert code == 1
    assert "signature verification failed for" in err and "siderolabs/" in err
    assert len(err.strip().splitlines()) == 1
    assert not (release / "sources.lock.json").exists()


def test_listed_version_missing_from_source(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = fresh_copy(layout_release, tmp_path)
    path = release / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["versions"]["list"] = ["v1.9.9"]
    path.write_text(yaml.safe_dump(config))
    code, _, err = cli(capsys, "lock", "--config", str(path))
    assert code == 2 and "version v1.9.9 is not in" in err


def test_lock_against_a_registry_with_a_namespace(
    registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pushed"
    argv = ["sample-release", "--out", str(out), "--versions", "v1.11.5"]
    assert main([*argv, "--push", registry.host, "--namespace", "lockns"]) == 0
    capsys.readouterr()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["sources"]["registry"] == registry.host
    code, _, err = cli(capsys, "lock", "--config", str(out / "config.yaml"))
    assert code == 0, err
    lock = json.loads((out / "sources.lock.json").read_text())
    imager = lock["versions"]["v1.11.5"]["imager"]
    assert imager["repository"] == "lockns/siderolabs/imager"
    assert cli(capsys, "lock", "--check", "--config", str(out / "config.yaml"))[0] == 0


def test_every_locked_image_is_pulled_unpacked_and_copied_by_skopeo(
    registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every image the lock pins, read back by our client (both arches) and by Debian's skopeo."""
    from imagefactory.oci import open_target
    from imagefactory.oci.pull import pull_image, unpack_image

    out = tmp_path / "pushed"
    argv = ["sample-release", "--out", str(out), "--versions", "v1.11.5", "--push", registry.host]
    assert main([*argv, "--namespace", "every"]) == 0
    assert main(["lock", "--config", str(out / "config.yaml")]) == 0
    capsys.readouterr()
    lock = json.loads((out / "sources.lock.json").read_text())["versions"]["v1.11.5"]
    pinned = [lock["imager"], lock["installer"], lock["extensionsCatalog"], lock["overlaysCatalog"]]
    pinned += [*lock["extensions"].values(), *lock["overlays"].values()]
    target = open_target(registry.host, insecure=True)
    for number, image in enumerate(pinned):
        for arch in ("amd64", "arm64"):
            pulled = pull_image(target, image["repository"], image["digest"], arch)
            dest = tmp_path / f"unpacked-{number}-{arch}"
            unpack_image(target, pulled, dest)
            assert any(dest.iterdir()), f"{image['repository']} ({arch}) unpacked to nothing"
        copied = subprocess.run(
            ["skopeo", "copy", "--all", "--src-tls-verify=false",
             f"docker://{registry.host}/{image['repository']}@{image['digest']}",
             f"oci:{tmp_path / f'skopeo-{number}'}:copy"],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert copied.returncode == 0, copied.stderr


def test_disabled_verification_writes_no_lock(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = fresh_copy(layout_release, tmp_path)
    path = release / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["sources"]["verify"] = {"disabled": True}
    path.write_text(yaml.safe_dump(config))
    code, _, err = cli(capsys, "lock", "--config", str(path))
    assert code == 2 and "nothing unverified goes into a lock" in err
    assert not (release / "sources.lock.json").exists()


def test_build_refuses_a_lock_made_from_another_source(
    layout_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = fresh_copy(layout_release, tmp_path)
    path = release / "config.yaml"
    assert cli(capsys, "lock", "--config", str(path))[0] == 0
    config = yaml.safe_load(path.read_text())
    config["sources"]["namespace"] = "elsewhere"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "s.yaml").write_text("customization: {}\n")
    argv = ["build", "--config", str(path), "--schematic", str(tmp_path / "s.yaml")]
    code, _, err = cli(
        capsys,
        *argv,
        "--version",
        "v1.11.5",
        "--asset",
        "kernel-amd64",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and "made from another source" in err
