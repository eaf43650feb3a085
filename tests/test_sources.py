"""Version selection (upstream's rules) and lock comparison, without any registry."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imagefactory.sources import filter_versions, lock_differences
from imagefactory.versions import TalosVersion

V = TalosVersion.parse

TAGS = [
    "v1.1.2",
    "v1.2.0",
    "v1.9.6",
    "v1.10.0-beta.0",
    "v1.10.0",
    "v1.11.0-alpha.1",
    "v1.11.0-rc.0",
    "v1.11.0-rc.0.1",
    "v1.11.0-custom.1",
    "v1.11.0-rc.x",
    "latest",
    "sha256-abc.sig",
    "v1.10.1",
]


def test_upstream_version_rules() -> None:
    offered = filter_versions(TAGS, V("1.2.0"), [V("1.10.1")])
    assert [v.tag for v in offered] == [
        "v1.2.0",
        "v1.9.6",
        "v1.10.0",
        "v1.11.0-alpha.1",
        "v1.11.0-rc.0",
    ]


def test_no_minimum_keeps_old_releases() -> None:
    assert filter_versions(["v1.1.2", "v1.0.0"], None, []) == [V("1.0.0"), V("1.1.2")]


def test_no_tags() -> None:
    assert filter_versions(["latest"], None, []) == []


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 12), st.integers(0, 9)), max_size=30))
def test_result_is_sorted_unique_and_above_minimum(triples: list[tuple[int, int, int]]) -> None:
    tags = [f"v{a}.{b}.{c}" for a, b, c in triples]
    offered = filter_versions(tags, V("1.2.0"), [])
    assert offered == sorted(set(offered))
    assert all(v >= V("1.2.0") for v in offered)
    assert {v.tag for v in offered} == {t for t in tags if V(t) >= V("1.2.0")}


def test_lock_differences_names_paths() -> None:
    old = {"versions": {"v1.9.6": {"imager": {"digest": "a"}}, "v1.7.7": {}}}
    new = {"versions": {"v1.9.6": {"imager": {"digest": "b"}}, "v1.13.0": {}}}
    assert lock_differences(old, new) == [
        "versions.v1.13.0: added",
        "versions.v1.7.7: removed",
        "versions.v1.9.6.imager.digest: 'a' -> 'b'",
    ]
    assert lock_differences(old, old) == []
