"""The lock checks: what a lock was made from, whether it still matches the config, and the
bounded, shape-checked read of the lock file (fast, no registry: mutation-tested)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefactory import sources
from imagefactory.config import Config, load_config
from imagefactory.errors import InvalidInput
from imagefactory.signing import keys
from imagefactory.yamlload import limits

DIGEST = "sha256:" + "1" * 64


def config(
    tmp_path: Path, registry: str = "oci-layout:oci", verify: str = "disabled: true"
) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"sources:\n  registry: {registry}\n  namespace: mirror\n  verify:\n    {verify}\n"
        "versions:\n  list: [v1.11.5]\n"
    )
    return load_config(path)


def lock(cfg: Config, **changes: object) -> dict[str, object]:
    made: dict[str, object] = {
        "lockFormat": sources.LOCK_FORMAT,
        "source": sources.lock_source(cfg),
        "versions": {
            "v1.11.5": {
                "imager": {"repository": "siderolabs/imager", "digest": DIGEST, "tag": "v1.11.5"},
                "installer": {"repository": "siderolabs/installer", "digest": DIGEST},
                "extensions": {},
                "overlays": {},
            }
        },
    }
    return {**made, **changes}


@pytest.fixture
def small_lock_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("IMAGEFACTORY_MAX_LOCK_BYTES", "1000")
    limits.cache_clear()
    yield 1000
    monkeypatch.undo()
    limits.cache_clear()


def test_lock_source_names_a_layout_inside_the_repository_relatively(tmp_path: Path) -> None:
    assert sources.lock_source(config(tmp_path)) == {
        "registry": "oci-layout:oci",
        "namespace": "mirror",
        "verification": "disabled",
    }


def test_lock_source_keeps_other_registries_as_they_are(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (tmp_path / "repo").mkdir()
    cfg = config(tmp_path / "repo", registry=f"oci-layout:{outside}")
    assert sources.lock_source(cfg)["registry"] == f"oci-layout:{outside}"
    assert sources.lock_source(config(tmp_path, registry="localhost:5000"))["registry"] == (
        "localhost:5000"
    )


def test_lock_source_names_a_public_key_by_its_digest(tmp_path: Path) -> None:
    key = keys.generate_key()
    keys.save_public_key(key, tmp_path / "cosign.pub")
    cfg = config(tmp_path, verify="publicKey: cosign.pub")
    verification = sources.lock_source(cfg)["verification"]
    assert verification == f"public key sha256:{keys.key_id(key)}"
    # Another key at the same path is another source.
    keys.save_public_key(keys.generate_key(), tmp_path / "cosign.pub")
    assert sources.lock_source(cfg)["verification"] != verification


def test_lock_source_describes_a_keyless_identity(tmp_path: Path) -> None:
    cfg = config(tmp_path, verify="keyless:\n      rootCertificate: root.pem")
    assert sources.lock_source(cfg)["verification"].startswith("keyless identity ")


def test_matching_lock_passes_in_either_form_of_the_layout_path(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    sources.check_lock_source(cfg, lock(cfg))
    for registry in (f"oci-layout:{tmp_path / 'oci'}", "oci-layout:./oci", "oci-layout:x/../oci"):
        source = {**sources.lock_source(cfg), "registry": registry}
        sources.check_lock_source(cfg, lock(cfg, source=source))


@pytest.mark.parametrize(
    "change",
    [
        {"registry": "oci-layout:other"},
        {"registry": "localhost:5000"},
        {"namespace": "elsewhere"},
        {"verification": "public key sha256:" + "2" * 64},
    ],
)
def test_lock_from_another_source_is_refused(tmp_path: Path, change: dict[str, str]) -> None:
    cfg = config(tmp_path)
    source = {**sources.lock_source(cfg), **change}
    with pytest.raises(InvalidInput) as info:
        sources.check_lock_source(cfg, lock(cfg, source=source))
    assert str(info.value) == (
        f"{cfg.lock_path}: made from another source or verification than {cfg.path} names; "
        "run `imagefactory lock`"
    )


def test_lock_without_a_source_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    for source in (None, {}):
        with pytest.raises(InvalidInput, match="made from another source"):
            sources.check_lock_source(cfg, lock(cfg, source=source))


def test_lock_bytes_are_sorted_indented_json_with_a_final_newline() -> None:
    assert sources.lock_bytes({"b": 1, "a": {"d": 2, "c": 3}}) == (
        b'{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'
    )


def test_written_lock_reads_back(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    made = lock(cfg)
    assert sources.write_lock(cfg, made) == cfg.lock_path == tmp_path / "sources.lock.json"
    assert cfg.lock_path.read_bytes() == sources.lock_bytes(made)
    assert sources.read_lock(cfg) == made


def test_missing_lock_says_to_run_lock(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with pytest.raises(InvalidInput) as info:
        sources.read_lock(cfg)
    assert str(info.value) == f"{cfg.lock_path}: no lock file; run `imagefactory lock` first"


def test_dangling_lock_symlink_is_not_a_missing_lock(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.lock_path.symlink_to(tmp_path / "gone.json")
    with pytest.raises(InvalidInput) as info:
        sources.read_lock(cfg)
    assert "no lock file" not in str(info.value) and "lock" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON: "),
        ("[" * 100_000 + "]" * 100_000, "lock is nested too deeply"),
        ('{"lockFormat": 2}', "unknown lock format 2"),
        ("[]", "unknown lock format 'list'"),
        ("{}", "unknown lock format None"),
    ],
)
def test_unreadable_locks_are_refused_with_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    cfg = config(tmp_path)
    cfg.lock_path.write_text(text)
    with pytest.raises(InvalidInput) as info:
        sources.read_lock(cfg)
    assert str(info.value).startswith(f"{cfg.lock_path}: {message}")


def test_lock_of_the_wrong_shape_names_where(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    made = lock(cfg)
    made["versions"]["v1.11.5"]["imager"]["digest"] = "sha256:short"  # type: ignore[index]
    cfg.lock_path.write_bytes(sources.lock_bytes(made))
    with pytest.raises(InvalidInput) as info:
        sources.read_lock(cfg)
    assert str(info.value).startswith(f"{cfg.lock_path}: versions.v1.11.5.imager.digest: ")
    assert "'sha256:short' does not match" in str(info.value)
    cfg.lock_path.write_bytes(sources.lock_bytes({**made, "source": "x"}))
    with pytest.raises(InvalidInput, match=r"lock\.json: source: 'x' is not of type 'object'$"):
        sources.read_lock(cfg)
    cfg.lock_path.write_bytes(sources.lock_bytes({"lockFormat": 1}))
    with pytest.raises(InvalidInput, match=r"lock\.json: \(top level\): 'source' is a required"):
        sources.read_lock(cfg)


def test_lock_size_is_bounded(tmp_path: Path, small_lock_limit: int) -> None:
    cfg = config(tmp_path)
    made = lock(cfg)
    text = json.dumps(made)
    cfg.lock_path.write_text(text + " " * (small_lock_limit - len(text)))
    assert sources.read_lock(cfg) == made
    cfg.lock_path.write_text(text + " " * (small_lock_limit + 1 - len(text)))
    with pytest.raises(InvalidInput, match="lock is larger than 1000 bytes"):
        sources.read_lock(cfg)


def test_make_lock_refuses_unverified_sources(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with pytest.raises(InvalidInput, match=r"sources\.verify is disabled"):
        sources.make_lock(cfg)


def test_unparsable_tags_are_skipped_wherever_they_are() -> None:
    assert [
        v.tag for v in sources.filter_versions(["latest", "v1.2.0", "x", "v1.3.0"], None, [])
    ] == [
        "v1.2.0",
        "v1.3.0",
    ]


def test_invalid_json_lock_says_where_parsing_stopped(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.lock_path.write_text('{"lockFormat": 1,')
    with pytest.raises(InvalidInput, match=r"not valid JSON: Expecting property name .*char 17"):
        sources.read_lock(cfg)


def test_lock_differences_between_a_map_and_a_value() -> None:
    assert sources.lock_differences({"a": {"b": 1}}, {"a": 1}) == ["a: {'b': 1} -> 1"]
    assert sources.lock_differences({"a": 1}, {"a": {"b": 1}}) == ["a: 1 -> {'b': 1}"]
