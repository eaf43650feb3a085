"""The planner: the target matrix per platform row, and cell keys that change only with their inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagefactory.config import load_config
from imagefactory.errors import InvalidInput
from imagefactory.plan import make_plan, targets_for
from imagefactory.versions import TalosVersion

SID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
BASE = """\
sources:
  registry: oci-layout:oci
  verify:
    publicKey: cosign.pub
versions:
  list: [v1.9.6, v1.11.5]
"""


def config_with(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + extra)
    return path


def names(tmp_path: Path, extra: str, version: str, *, secureboot: bool = False) -> set[str]:
    config = load_config(config_with(tmp_path, extra))
    targets = targets_for(config, SID, TalosVersion.parse(version), secureboot=secureboot)
    return {f"{t.kind}:{t.path.split('/', 3)[-1]}" for t in targets}


def test_default_matrix_is_the_metal_set_for_both_arches(tmp_path: Path) -> None:
    got = names(tmp_path, "", "v1.11.5")
    for arch in ("amd64", "arm64"):
        assert {
            f"kernel:kernel-{arch}",
            f"initramfs:initramfs-{arch}.xz",
            f"cmdline:cmdline-metal-{arch}",
            f"uki:metal-{arch}-uki.efi",
            f"iso:metal-{arch}.iso",
            f"disk:metal-{arch}.raw.zst",
            f"installer:installer-{arch}.tar",
            f"pxe:metal-{arch}",
        } <= got
    assert len(got) == 16
    # Before 1.8 the imager compressed disk images with xz.
    assert "disk:metal-amd64.raw.xz" in names(tmp_path, "", "v1.7.7")


def test_secure_boot_variants_only_where_they_exist(tmp_path: Path) -> None:
    got = names(tmp_path, "", "v1.11.5", secureboot=True)
    assert "uki:metal-amd64-secureboot-uki.efi" in got
    assert "pxe:metal-arm64-secureboot" in got
    assert "installer:installer-amd64-secureboot.tar" in got
    assert not any("kernel-amd64-secureboot" in n for n in got)
    assert len(got) == 16 + 12


def test_rows_choose_platforms_arches_and_kinds(tmp_path: Path) -> None:
    extra = """\
targets:
  platforms:
    - platform: metal
      archs: [amd64]
      assets: [kernel, pxe]
    - platform: aws
      archs: [arm64]
      assets: [disk, iso, kernel]
"""
    got = names(tmp_path, extra, "v1.11.5")
    # aws has no ISO and no PXE boot: only its disk image.
    disk = next(n for n in got if n.startswith("disk:"))
    assert got == {"kernel:kernel-amd64", "pxe:metal-amd64", disk}
    assert disk.startswith("disk:aws-arm64.raw.")


def test_all_platforms_is_every_row(tmp_path: Path) -> None:
    got = names(tmp_path, "targets:\n  platforms:\n    - platform: all\n", "v1.11.5")
    assert "disk:aws-amd64.raw.xz" in got or "disk:aws-amd64.raw.zst" in got
    assert "iso:metal-arm64.iso" in got
    assert len(got) > 40


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "targets:\n  platforms:\n    - platform: metal\n      assets: [bogus]\n",
            "line 10: targets.platforms.0.assets",
        ),
        ("targets:\n  platforms:\n    - archs: [amd64]\n", "platform"),
        ("targets:\n  secureBoot: yes-please\n", "targets.secureBoot"),
        (
            "targets:\n  platforms:\n    - platform: metal\n      archs: [ppc]\n",
            "line 10: targets.platforms.0.archs.0",
        ),
    ],
)
def test_bad_targets_name_field_and_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_config(config_with(tmp_path, extra))


def test_unknown_platform_is_bad_input(tmp_path: Path) -> None:
    config = load_config(config_with(tmp_path, "targets:\n  platforms:\n    - platform: nope\n"))
    with pytest.raises(InvalidInput, match="unknown platform"):
        targets_for(config, SID, TalosVersion.parse("v1.11.5"), secureboot=False)


def lock(digest: str = "sha256:" + "1" * 64) -> dict[str, object]:
    def entry(tag: str) -> dict[str, object]:
        return {
            "imager": {"digest": "sha256:" + "a" * 64},
            "installer": {"digest": "sha256:" + "b" * 64},
            "extensions": {
                "siderolabs/iscsi-tools": {
                    "digest": digest if tag == "v1.11.5" else "sha256:" + "2" * 64,
                    "ref": "x",
                    "author": "a",
                    "description": "d",
                },
            },
            "overlays": {},
        }

    return {"versions": {"v1.9.6": entry("v1.9.6"), "v1.11.5": entry("v1.11.5")}}


@pytest.fixture
def matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two schematics, two versions, a small matrix; the lock is read from `tmp_path/lock.json`."""
    directory = tmp_path / "schematics"
    directory.mkdir()
    (directory / "vanilla.yaml").write_text("customization: {}\n")
    (directory / "tools.yaml").write_text(
        "customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/iscsi-tools]\n"
    )
    (tmp_path / "lock.json").write_text(json.dumps(lock()))
    monkeypatch.setattr(
        "imagefactory.sources.read_lock",
        lambda config: json.loads((tmp_path / "lock.json").read_text()),
    )
    extra = "targets:\n  platforms:\n    - platform: metal\n      archs: [amd64]\n      assets: [kernel, cmdline]\n"
    return config_with(tmp_path, extra)


def published_keys(config_path: Path) -> dict[str, object]:
    """What a publish of this plan would record: every cell's key."""
    plan = make_plan(load_config(config_path), {})
    return {"cells": {c.cell_id: c.key for c in plan.cells}, "site": plan.site_key, "generation": 1}


def stale(config_path: Path, published: dict[str, object]) -> set[str]:
    plan = make_plan(load_config(config_path), published)
    return {c.cell_id.split("/")[1] + ":" + c.schematic_file.stem for c in plan.cells}


def test_nothing_stale_when_inputs_are_unchanged(matrix: Path) -> None:
    published = published_keys(matrix)
    plan = make_plan(load_config(matrix), published)
    assert plan.cells == [] and plan.up_to_date and len(plan.kept) == 4


def test_a_new_schematic_is_only_its_cells(matrix: Path) -> None:
    published = published_keys(matrix)
    (matrix.parent / "schematics" / "args.yaml").write_text(
        "customization:\n  extraKernelArgs: [net.ifnames=0]\n"
    )
    assert stale(matrix, published) == {"v1.9.6:args", "v1.11.5:args"}


def test_a_changed_extension_digest_is_only_the_cells_using_it(matrix: Path) -> None:
    published = published_keys(matrix)
    (matrix.parent / "lock.json").write_text(json.dumps(lock("sha256:" + "9" * 64)))
    assert stale(matrix, published) == {"v1.11.5:tools"}


def test_a_changed_target_list_or_external_url_is_every_cell(matrix: Path) -> None:
    published = published_keys(matrix)
    matrix.write_text(matrix.read_text().replace("[kernel, cmdline]", "[kernel]"))
    assert len(stale(matrix, published)) == 4
    published = published_keys(matrix)
    matrix.write_text(matrix.read_text() + "externalURL: https://factory.example/\n")
    assert len(stale(matrix, published)) == 4


def test_a_removed_schematic_is_removed(matrix: Path) -> None:
    published = published_keys(matrix)
    (matrix.parent / "schematics" / "tools.yaml").unlink()
    plan = make_plan(load_config(matrix), published)
    assert plan.cells == [] and len(plan.removed) == 2 and not plan.up_to_date


def test_one_bad_schematic_stops_the_plan_naming_file_and_line(matrix: Path) -> None:
    (matrix.parent / "schematics" / "bad.yaml").write_text("customization:\n  bogus: 1\n")
    with pytest.raises(InvalidInput, match=r"bad\.yaml.*line 2"):
        make_plan(load_config(matrix), {})
