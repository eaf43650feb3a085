"""TalosVersion: strict parsing with an optional `v`, semver ordering, clear errors."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.errors import InvalidInput
from imagefactory.versions import TalosVersion

V = TalosVersion.parse


@pytest.mark.parametrize(
    ("text", "fields", "tag"),
    [
        ("1.10.0", (1, 10, 0, ()), "v1.10.0"),
        ("v1.10.0", (1, 10, 0, ()), "v1.10.0"),
        ("v1.11.0-alpha.1", (1, 11, 0, ("alpha", "1")), "v1.11.0-alpha.1"),
        ("1.9.0-beta.0", (1, 9, 0, ("beta", "0")), "v1.9.0-beta.0"),
        ("v1.12.0-rc.1", (1, 12, 0, ("rc", "1")), "v1.12.0-rc.1"),
        ("v1.10.0-alpha.0-5-gabcdef", (1, 10, 0, ("alpha", "0-5-gabcdef")), None),
        ("0.0.0", (0, 0, 0, ()), "v0.0.0"),
    ],
)
def test_parse(text: str, fields: tuple[object, ...], tag: str | None) -> None:
    version = V(text)
    assert (version.major, version.minor, version.patch, version.prerelease) == fields
    if tag is not None:
        assert version.tag == tag
        assert str(version) == tag[1:]


def test_with_and_without_v_are_equal() -> None:
    assert V("v1.10.3") == V("1.10.3")
    assert hash(V("v1.10.3")) == hash(V("1.10.3"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "v",
        "1.10",
        "1",
        "V1.10.0",
        "vv1.10.0",
        "1.10.0.1",
        "01.10.0",
        "1.010.0",
        "1.10.0-",
        "1.10.0-alpha..1",
        "1.10.0-01",
        "1.10.0+build",
        " 1.10.0",
        "1.10.0 ",
        "latest",
        "v1.x.0",
    ],
)
def test_malformed_versions_name_the_input(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        V(text)
    assert repr(text) in str(info.value)


def test_semver_precedence() -> None:
    ordered = [
        "1.9.6",
        "1.10.0-alpha.0",
        "1.10.0-alpha.1",
        "1.10.0-alpha.10",
        "1.10.0-alpha.beta",
        "1.10.0-beta.0",
        "1.10.0-beta.2",
        "1.10.0-rc.1",
        "1.10.0",
        "1.10.1",
        "1.11.0",
        "2.0.0",
    ]
    versions = [V(text) for text in ordered]
    assert sorted(reversed(versions)) == versions
    assert all(a < b for a, b in itertools.pairwise(versions))
    assert V("1.10.0-alpha") < V("1.10.0-alpha.1")


def test_release_drops_the_prerelease() -> None:
    assert V("v1.11.0-beta.1").release == V("1.11.0")
    assert V("v1.11.0-beta.1").is_prerelease
    assert not V("1.11.0").is_prerelease
    assert V("1.11.3").minor_line == "1.11"


def test_comparison_with_other_types_is_not_supported() -> None:
    with pytest.raises(TypeError):
        assert V("1.0.0") < "1.0.1"


_ident = st.one_of(
    st.integers(0, 99).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True),
)
versions = st.builds(
    TalosVersion,
    st.integers(0, 3),
    st.integers(0, 20),
    st.integers(0, 20),
    st.lists(_ident, max_size=3).map(tuple),
)


@given(versions)
def test_text_round_trip(version: TalosVersion) -> None:
    assert V(str(version)) == version
    assert V(version.tag) == version


@given(versions, versions)
def test_ordering_is_total_and_consistent(a: TalosVersion, b: TalosVersion) -> None:
    assert (a < b) + (a == b) + (a > b) == 1
    if a.release != b.release:
        assert (a < b) == ((a.major, a.minor, a.patch) < (b.major, b.minor, b.patch))
    assert a.release >= a
