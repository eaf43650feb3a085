"""Schematic parsing, canonical bytes and IDs against upstream's vectors and Go yaml rules."""

from __future__ import annotations

import hashlib
import io
import json
import string
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_goyaml import _document, schematics

from imagefactory import cli
from imagefactory.errors import InvalidInput
from imagefactory.schematic import (
    Bootloader,
    Customization,
    DiskImage,
    MetaValue,
    Overlay,
    Schematic,
    SecureBoot,
    _fast_fields,
    parse_schematic,
    schematic_id,
)
from imagefactory.yamlload import MAX_BYTES, Constructor, compose_first_document

DATA = Path(__file__).parent / "data" / "schematics"
VANILLA = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

# Reference §1.3 (upstream pkg/schematic/schematic_test.go TestID / TestUnmarshalID).
VECTORS = [
    (b"{}", b"customization: {}\n", VANILLA),
    (b"customization: {}\n", b"customization: {}\n", VANILLA),
    (b'customization: {"extraKernelArgs": []}', b"customization: {}\n", VANILLA),
    (
        b'{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}',
        b"customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n",
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        b'{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}',
        b"customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n",
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        b'{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [],'
        b' "systemExtensions": {}}}',
        b"customization:\n    meta:\n        - key: 10\n          value: foo\n",
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
    ),
    (
        b'{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}}',
        b"overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n"
        b"customization: {}\n",
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        b'{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"},'
        b' "customization": {}}',
        b"overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n"
        b"customization: {}\n",
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        b'{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}',
        b"customization:\n    secureboot:\n        includeWellKnownCertificates: true\n",
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
    ),
]


@pytest.mark.parametrize(("body", "canonical", "expected_id"), VECTORS)
def test_upstream_vectors(body: bytes, canonical: bytes, expected_id: str) -> None:
    schematic = parse_schematic(body)
    assert schematic.canonical() == canonical
    assert schematic.id == expected_id
    assert hashlib.sha256(canonical).hexdigest() == expected_id


def test_disk_image_vector_from_model() -> None:
    # Upstream builds this one as a Go struct: DiskImage.SectorSize = 4096.
    schematic = Schematic(customization=Customization(disk_image=DiskImage(sector_size=4096)))
    assert schematic.canonical() == b"customization:\n    diskImage:\n        sectorSize: 4096\n"
    assert schematic.id == "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea"
    assert schematic_id(schematic) == schematic.id


@pytest.mark.parametrize(
    "body",
    [
        b"customization:\n  extraKernelArgs: []\n  meta: []\n  bootloader: none\n",
        b"customization:\n  diskImage: {sectorSize: 0}\n  secureboot: {enrollKeys: ''}\n",
        b"customization: ~\n",
        b"customization:\n",
        b"overlay: {options: {}}\ncustomization: {bootloader: NONE}\n",
        b"---\n...\n",
        b"customization: {}\n---\ncustomization: {extraKernelArgs: [a]}\n",
        b"customization: {}\n---\n[ this second document is never read\n",
    ],
)
def test_zero_values_normalise_to_vanilla(body: bytes) -> None:
    assert parse_schematic(body).id == VANILLA


def test_model_fields_from_full_schematic() -> None:
    schematic = parse_schematic((DATA / "realistic.yaml").read_bytes())
    c = schematic.customization
    assert c.extra_kernel_args == ("console=ttyS0", "net.ifnames=0", "talos.dashboard.disabled=1")
    assert c.meta == (MetaValue(key=10, value='{"externalIPs": ["192.0.2.10"]}'),)
    assert c.official_extensions[0] == "siderolabs/gvisor"
    assert c.bootloader is Bootloader.SD_BOOT
    assert schematic.overlay.options["retries"] == 3
    assert schematic.overlay.options["ratio"] == 0.5
    assert schematic.canonical() == (DATA / "realistic.canonical.yaml").read_bytes()


def test_yaml_and_json_spellings_share_an_id() -> None:
    yaml_form = parse_schematic((DATA / "realistic.yaml").read_bytes())
    json_form = parse_schematic((DATA / "realistic.json").read_bytes())
    assert yaml_form.id == json_form.id
    rpi = parse_schematic((DATA / "rpi-overlay.json").read_bytes())
    assert rpi.id == "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9"


def test_model_built_in_python_matches_parsed() -> None:
    built = Schematic(
        overlay=Overlay(image="img", name="n", options={"b": 1, "a": [True, None]}),
        customization=Customization(
            extra_kernel_args=("a",),
            bootloader=Bootloader.GRUB,
            secureboot=SecureBoot(enroll_keys="force"),
        ),
    )
    parsed = parse_schematic(
        b"overlay: {image: img, name: n, options: {a: [true, ~], b: 1}}\n"
        b"customization:\n  secureboot: {enrollKeys: force}\n  bootloader: GRUB\n"
        b"  extraKernelArgs: [a]\n"
    )
    assert built.canonical() == parsed.canonical()


# ---- Go yaml decoding rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        # Any non-null scalar decodes into a Go string field by its text (constructInt/Bool/Float).
        (b"customization: {extraKernelArgs: [123, true, 1.50, 0x1F]}", b'- "123"\n'),
        # Null items of a []string are skipped; quoted "null" is a string.
        (b"customization: {extraKernelArgs: [a, null, ~, 'null']}", b'- a\n        - "null"\n'),
        # uint8 accepts Go integer spellings and lossless floats.
        (b"customization: {meta: [{key: 0xa, value: x}]}", b"key: 10\n"),
        (b"customization: {meta: [{key: 0o12, value: x}]}", b"key: 10\n"),
        (b"customization: {meta: [{key: 012, value: x}]}", b"key: 10\n"),
        (b"customization: {meta: [{key: 0b1010, value: x}]}", b"key: 10\n"),
        (b"customization: {meta: [{key: 1_0, value: x}]}", b"key: 10\n"),
        (b"customization: {meta: [{key: 10.0, value: x}]}", b"key: 10\n"),
        (b"customization: {meta: [{key: 255, value: x}]}", b"key: 255\n"),
        # A missing value stays the empty string, which Go still writes (no omitempty).
        (b"customization: {meta: [{key: 1}]}", b'value: ""\n'),
        # YAML 1.1 spellings are accepted into a typed bool.
        (
            b"customization: {secureboot: {includeWellKnownCertificates: yes}}",
            b"includeWellKnownCertificates: true\n",
        ),
        # !!binary into a string field is the decoded text.
        (b"customization: {extraKernelArgs: [!!binary YWJj]}", b"- abc\n"),
        # Go ignores an explicit tag on a sequence decoded into a slice.
        (b"customization: {extraKernelArgs: !!int [a]}", b"- a\n"),
        # An unknown top-level key is an error even when it only holds an anchor.
        (
            b"base: &b {extraKernelArgs: [x]}\n",
            None,
        ),
    ],
)
def test_go_decoding_rules(body: bytes, canonical: bytes | None) -> None:
    if canonical is None:
        with pytest.raises(
            InvalidInput, match=r"field base not found in type schematic\.Schematic"
        ):
            parse_schematic(body)
        return
    assert canonical in parse_schematic(body).canonical()


def test_merge_key_and_aliases() -> None:
    body = (
        b"customization:\n"
        b"  <<: {extraKernelArgs: [merged], meta: [{key: 1, value: m}]}\n"
        b"  extraKernelArgs: &args [own]\n"
        b"  systemExtensions: {officialExtensions: *args}\n"
    )
    c = parse_schematic(body).customization
    assert c.extra_kernel_args == ("own",)
    assert c.meta == (MetaValue(1, "m"),)
    assert c.official_extensions == ("own",)


def test_redefined_anchor_uses_latest_definition() -> None:
    body = b"customization:\n  extraKernelArgs: [&a x, *a, &a y, *a]\n"
    assert parse_schematic(body).customization.extra_kernel_args == ("x", "x", "y", "y")


def test_overlay_options_decode_like_go_any() -> None:
    body = (
        b"overlay:\n  image: i\n  name: n\n  options:\n"
        b"    int: 0x10\n    big: 18446744073709551615\n    float: 1e3\n    exp: 1e6\n"
        b"    date: 2024-01-02\n    stamp: 2001-12-14t21:59:43.10-05:00\n    old: yes\n"
        b"    nulls: [~, null, '']\n    nonstring: {1: a, true: b, null: c}\n    empty: {}\n"
        b"    merge: <<\n"
    )
    canonical = parse_schematic(body).canonical().decode()
    assert "        int: 16\n" in canonical
    assert "        big: 18446744073709551615\n" in canonical
    assert "        float: 1000\n" in canonical
    assert "        exp: 1e+06\n" in canonical
    # Implicit timestamps become time.Time in `any` and come back in RFC 3339.
    assert "        date: 2024-01-02T00:00:00Z\n" in canonical
    assert "        stamp: 2001-12-14T21:59:43.1-05:00\n" in canonical
    assert "        old: 'yes'\n" in canonical
    assert '        nulls:\n            - null\n            - null\n            - ""\n' in canonical
    # Non-string keys make a map[interface{}]interface{}: bools sort before ints, nil after.
    assert "        nonstring:\n            true: b\n            1: a\n            null: c\n" in (
        canonical
    )
    assert "        empty: {}\n" in canonical
    # A plain `<<` value is a merge tag that no value can hold: Go drops the key.
    assert "merge" not in canonical


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "schematic is empty"),
        (b"# only a comment\n", "schematic is empty"),
        (
            b"customization:\n  unknownField: 1\n",
            "line 2: field unknownField not found in type schematic.Customization",
        ),
        (b"overlay: {foo: 1}\n", "line 1: field foo not found in type schematic.Overlay"),
        (b"extensions: []\n", "field extensions not found in type schematic.Schematic"),
        (
            b"customization:\n  meta:\n    - key: 256\n      value: x\n",
            "line 3: cannot construct !!int `256` into uint8",
        ),
        (b"customization: {meta: [{key: -1, value: x}]}", "cannot construct !!int `-1` into uint8"),
        (b"customization: {meta: [{key: '10'}]}", "cannot construct !!str `10` into uint8"),
        (
            b"customization: {extraKernelArgs: [2024-01-01T10:00:00Z]}",
            "cannot construct !!timestamp `2024-01...` into string",
        ),
        (b"customization: {meta: [{key: 10.5}]}", "cannot construct !!float `10.5` into uint8"),
        (b"customization: {meta: [{key: true}]}", "cannot construct !!bool `true` into uint8"),
        (b"customization: {meta: {key: 1}}", "cannot construct !!map into []schematic.MetaValue"),
        (b"customization: {meta: [[1]]}", "cannot construct !!seq into schematic.MetaValue"),
        (b"customization: {extraKernelArgs: a}", "cannot construct !!str `a` into []string"),
        (b"customization: {extraKernelArgs: [{a: b}]}", "cannot construct !!map into string"),
        (
            b"customization: {extraKernelArgs: [2024-01-01]}",
            "cannot construct !!timestamp `2024-01-01` into string",
        ),
        (
            b"customization: {secureboot: {includeWellKnownCertificates: 'true'}}",
            "cannot construct !!str `true` into bool",
        ),
        (
            b"customization: {secureboot: {includeWellKnownCertificates: 1}}",
            "cannot construct !!int `1` into bool",
        ),
        (
            b"customization: {diskImage: {sectorSize: -512}}",
            "cannot construct !!int `-512` into uint",
        ),
        (b"customization: {bootloader: auto}", "auto does not belong to BootloaderKind values"),
        (b"customization: {bootloader: uefi}", "uefi does not belong to BootloaderKind values"),
        (b"customization: {bootloader: ''}", " does not belong to BootloaderKind values"),
        (
            b"customization: {bootloader: [grub]}",
            "cannot construct !!seq into imageropts.BootloaderKind (TextUnmarshaler)",
        ),
        (b"overlay: {options: [a]}", "cannot construct !!seq into map[string]interface {}"),
        (b"overlay: {options: {a: 1, a: 2}}", 'line 1: mapping key "a" already defined at line 1'),
        (
            b"customization: {}\ncustomization: {}\n",
            'line 2: mapping key "customization" already defined at line 1',
        ),
        (b"- customization\n", "cannot construct !!seq into schematic.Schematic"),
        (b"customization\n", "cannot construct !!str `customi...` into schematic.Schematic"),
        (
            b"owner: alice\ncustomization: {}\n",
            "owner field is only supported in Enterprise edition",
        ),
        (b"customization: {extraKernelArgs: [*nope]}", "unknown anchor 'nope' referenced"),
        (b"customization: [\n", "line 2"),
        (
            b"customization: {extraKernelArgs: [!!int abc]}",
            "cannot construct !!str `abc` as a !!int",
        ),
        (b"customization: {extraKernelArgs: [!!binary '@@']}", "invalid base64"),
        (b"a: &a [*a]\n", None),
    ],
)
def test_bad_input_is_one_clear_error(body: bytes, message: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_schematic(body, source="in.yaml")
    text = str(caught.value)
    assert text.startswith("in.yaml: ")
    assert "\n" not in text
    if message is not None:
        assert message in text


def test_recursive_anchor_is_refused() -> None:
    with pytest.raises(InvalidInput, match="anchor 'a' value contains itself"):
        parse_schematic(b"overlay: {options: {x: &a [*a]}}\n")


def test_several_errors_are_reported_together() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_schematic(b"customization:\n  foo: 1\n  meta: [{key: 300}]\n")
    assert "line 2: field foo not found" in str(caught.value)
    assert "line 3: cannot construct !!int `300` into uint8" in str(caught.value)


def test_oversized_body_is_refused_before_parsing() -> None:
    body = b"customization: {}\n" + b"#" * MAX_BYTES
    with pytest.raises(InvalidInput, match="larger than 1048576 bytes"):
        parse_schematic(body)


@pytest.mark.parametrize(
    ("depth", "message"), [(300, "nesting deeper than 200"), (5000, "nesting")]
)
def test_deep_nesting_is_refused(depth: int, message: str) -> None:
    body = b"overlay: {options: {a: " + b"[" * depth + b"]" * depth + b"}}"
    with pytest.raises(InvalidInput, match=message):
        parse_schematic(body)


def _billion_laughs(levels: int) -> bytes:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join(f"*a{i - 1}" for _ in range(10))
        lines.append(f"a{i}: &a{i} [{refs}]")
    return ("overlay:\n  options:\n" + "".join(f"    {line}\n" for line in lines)).encode()


def test_billion_laughs_fails_after_few_construct_steps() -> None:
    body = _billion_laughs(10)  # 10**10 strings if expanded
    root = compose_first_document(body, "laughs")
    constructor = Constructor("laughs")
    with pytest.raises(InvalidInput, match="excessive aliasing"):
        constructor.construct(root, constructor.to_any)
    # Go's rule trips once alias expansion is 99% of the construct steps: a few thousand
    # steps instead of 10**10.
    assert constructor.constructs < 10_000
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="excessive aliasing"):
            parse_schematic(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


def test_moderate_aliasing_is_accepted() -> None:
    body = _billion_laughs(2)  # 10 lists of 10: expansion within Go's bound
    options = parse_schematic(body).overlay.options
    assert len(options["a1"]) == 10


# ---- CLI --------------------------------------------------------------------------------------


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_cli_id_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"customization: {}\n")
    assert cli.main(["schematic", "id", "-"]) == 0
    assert capsys.readouterr().out == VANILLA + "\n"


def test_cli_id_defaults_to_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"{}")
    assert cli.main(["schematic", "id"]) == 0
    assert capsys.readouterr().out == VANILLA + "\n"


def test_cli_canonical_writes_exact_bytes(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    path = DATA / "realistic.yaml"
    assert cli.main(["schematic", "canonical", str(path)]) == 0
    assert capfdbinary.readouterr().out == (DATA / "realistic.canonical.yaml").read_bytes()


def test_cli_id_of_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schematic", "id", str(DATA / "rpi-overlay.json")]) == 0
    assert capsys.readouterr().out == (
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9\n"
    )


def test_cli_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schematic", "id", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "nope.yaml: no such file; cannot read schematic" in err


def test_cli_bad_schematic_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"customization": {"unknownField": 1}}))
    assert cli.main(["schematic", "canonical", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "field unknownField not found in type schematic.Customization" in captured.err


# ---- fast path (C composer) against the slow path (event composer) ----------------------------

_FIELD_NAMES = [
    "owner",
    "overlay",
    "image",
    "name",
    "options",
    "customization",
    "embeddedMachineConfiguration",
    "extraKernelArgs",
    "meta",
    "key",
    "value",
    "systemExtensions",
    "officialExtensions",
    "bootloader",
    "secureboot",
    "enrollKeys",
    "includeWellKnownCertificates",
    "diskImage",
    "sectorSize",
]
# Scalars as written in YAML: plain words of every resolved type, quoted forms, tags, oddities.
_SCALAR_TEXT = st.one_of(
    st.sampled_from(
        [
            "~",
            "null",
            "",
            "true",
            "False",
            "yes",
            "off",
            "'yes'",
            '"on"',
            "10",
            "255",
            "256",
            "-1",
            "0x1F",
            "0o17",
            "017",
            "1_000",
            "1e3",
            "10.0",
            "10.5",
            ".inf",
            ".nan",
            "2001-12-14",
            "<<",
            "sd-boot",
            "GRUB",
            "none",
            "dual-boot",
            "'sd-boot'",
            "!!str 10",
            "!!int 5",
            "!!binary aGVsbG8=",
            "!foo bar",
            "! x",
            '"a\\tb"',
            '"\\u00e9"',
            "'it''s'",
            "|\n  block\n",
            "&a x",
            "*a",
        ]
    ),
    st.text(alphabet=string.ascii_letters + string.digits + "./=_-", min_size=1, max_size=12),
    st.text(max_size=10).map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.text(max_size=10).map(lambda t: json.dumps(t, ensure_ascii=False)),
)
_KEYS = st.one_of(
    st.sampled_from(_FIELD_NAMES),
    st.sampled_from(['"meta"', "'key'", "unknown", "<<", "1"]),
)


def _yaml_values() -> st.SearchStrategy[object]:
    return st.recursive(
        _SCALAR_TEXT,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(st.tuples(_KEYS, children), max_size=4).map(dict),
        ),
        max_leaves=14,
    )


def _flow(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    text = str(value)
    return json.dumps(text) if "\n" in text else text


def _block(value: object, indent: int) -> str:
    pad = " " * indent
    if isinstance(value, dict) and value:
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{_block(v, indent + 2)}")
            else:
                lines.append(f"{pad}{k}: {_flow(v)}\n")
        return "".join(lines)
    if isinstance(value, list) and value:
        return "".join(f"{pad}- {_flow(v)}\n" for v in value)
    return pad + _flow(value) + "\n"


# Printable: libyaml refuses control characters (other than tab and breaks) raw in the stream.
_PRINTABLE = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\ufeff"),
    max_size=10,
)
_TEXTS = st.one_of(
    st.sampled_from(["~", "", "10", "1e3", "true", "yes", "'yes'", "2001-12-14", '"a\\tb"']),
    st.text(alphabet=string.ascii_letters + string.digits + "./=_-", min_size=1, max_size=12),
    _PRINTABLE.map(lambda t: "'" + t.replace("'", "''") + "'"),
    _PRINTABLE.map(lambda t: json.dumps(t, ensure_ascii=False)),
)
# Well-typed spellings per field kind, so that most generated documents are accepted.
_GOOD = {
    "text": _TEXTS,
    "key": st.sampled_from(["0", "10", "255", "0xA", "0o17", "1_0", "10.0", "1e2", "~", "<<"]),
    "bool": st.sampled_from(["true", "False", "yes", "'on'", "N", "~"]),
    "bootloader": st.sampled_from(["sd-boot", "GRUB", "none", "Dual-Boot", "'grub'", "~"]),
    "uint": st.sampled_from(["0", "512", "4096", "0x1000", "18446744073709551615", "~"]),
}
_PLAIN_VALUES = st.recursive(
    _TEXTS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(_TEXTS, children, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def yaml_documents(draw: st.DrawFn) -> bytes:
    """Schematic-shaped YAML, block or flow: mostly well-typed, else any field, type or key."""
    good = draw(st.booleans())

    def kind(name: str) -> st.SearchStrategy[object]:
        return _GOOD[name] if good else _SCALAR_TEXT

    def many(element: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        return (
            st.lists(element, max_size=5)
            if good
            else st.lists(element, max_size=3) | _yaml_values()
        )

    def struct(**fields: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        strategy = st.fixed_dictionaries({}, optional=fields)
        return strategy if good else strategy | _yaml_values()

    customization = struct(
        extraKernelArgs=many(kind("text")),
        meta=many(struct(key=kind("key"), value=kind("text"))),
        systemExtensions=struct(officialExtensions=many(kind("text"))),
        bootloader=kind("bootloader"),
        secureboot=struct(enrollKeys=kind("text"), includeWellKnownCertificates=kind("bool")),
        diskImage=struct(sectorSize=kind("uint")),
        embeddedMachineConfiguration=kind("text"),
    )
    overlay = struct(
        image=kind("text"),
        name=kind("text"),
        options=st.dictionaries(_TEXTS, _PLAIN_VALUES, max_size=3) if good else _yaml_values(),
    )
    fields = {"overlay": overlay, "customization": customization}
    if not good:
        fields["owner"] = _SCALAR_TEXT
    doc: dict[str, object] = draw(st.fixed_dictionaries({}, optional=fields))
    if not good:
        for key, value in draw(st.lists(st.tuples(_KEYS, _yaml_values()), max_size=1)):
            doc[key] = value  # an unknown, repeated-looking or merge key now and then
    items = list(doc.items())
    draw(st.randoms()).shuffle(items)
    text = _flow(dict(items)) + "\n" if draw(st.booleans()) else _block(dict(items), 0)
    return text.encode("utf-8", "surrogatepass")


def _outcome(body: bytes, fast: bool) -> tuple[str, str]:
    try:
        schematic = parse_schematic(body, source="doc", fast=fast)
    except InvalidInput as exc:
        return "error", str(exc)
    return repr(schematic), schematic.canonical().decode("utf-8", "surrogateescape")


@given(yaml_documents())
@settings(max_examples=min(400, 4 * settings.default.max_examples))
def test_fast_path_agrees_with_slow_path_on_yaml(body: bytes) -> None:
    assert _outcome(body, fast=True) == _outcome(body, fast=False)


@given(schematics(), st.sampled_from([None, 0, 2]), st.booleans())
def test_fast_path_agrees_with_slow_path_on_json(
    schematic: Schematic, indent: int | None, compact: bool
) -> None:
    document = _document(schematic, reverse=False)
    separators = (",", ":") if compact else None
    for ascii_only in (True, False):
        body = json.dumps(
            document, indent=indent, separators=separators, ensure_ascii=ascii_only
        ).encode("utf-8", "surrogatepass")
        assert _outcome(body, fast=True) == _outcome(body, fast=False)


def test_fast_path_reads_plain_documents_and_declines_the_rest() -> None:
    realistic = (DATA / "realistic.yaml").read_bytes()
    assert _fast_fields(realistic) is not None
    assert _fast_fields((DATA / "realistic.json").read_bytes()) is not None
    assert _fast_fields(b'{"customization":{"extraKernelArgs":["a"]}}') is not None
    for body in [
        b"customization: {extraKernelArgs: &a [x]}\n",  # anchors: the event composer bounds them
        b"customization: {extraKernelArgs: !!seq [x]}\n",  # explicit tags
        b"customization: {extraKernelArgs: [x], foo: 1}\n",  # errors are worded by the slow path
        b"customization: {meta: [{key: 300}]}\n",
        # More collection indicators than MAX_DEPTH: maybe too deep for the C composer.
        b"overlay: {options: {a: " + b"[" * 196 + b"]" * 196 + b"}}\n",
        b"",
    ]:
        assert _fast_fields(body) is None, body
    # Overlay options are decoded by the slow constructor inside the fast path.
    fields = _fast_fields(b"overlay: {options: {a: [1, 0x10, yes, '2'], b: {c: ~}}}\n")
    assert fields == {"overlay": {"options": {"a": (1, 16, "yes", "2"), "b": {"c": None}}}}


# ---- go-yaml v4 rc.6+: YAML 1.2's character set on input, escaped on output ----------------------


@pytest.mark.parametrize("code", [0x7F, 0x80, 0x84, 0x86, 0x9F])
@pytest.mark.parametrize("style", ["plain", "single", "double", "literal"])
def test_del_and_c1_are_accepted_and_emitted_escaped(code: int, style: str) -> None:
    char = chr(code)
    value = {
        "plain": f"a{char}b",
        "single": f"'a{char}b'",
        "double": f'"a{char}b"',
        "literal": f"|-\n      a{char}b",
    }[style]
    text = f"customization:\n  extraKernelArgs:\n    - {value}\n"
    for fast in (True, False):
        schematic = parse_schematic(text.encode(), fast=fast)
        assert schematic.customization.extra_kernel_args == (f"a{char}b",)
        escaped = f'"a\\x{code:02X}b"'.encode()
        assert (
            schematic.canonical()
            == b"customization:\n    extraKernelArgs:\n        - " + escaped + b"\n"
        )
    # The escaped spelling is the same schematic, so the same ID.
    assert parse_schematic(schematic.canonical()).id == schematic.id


def test_del_in_keys_anchors_and_options_survive() -> None:
    text = "overlay:\n  name: x\n  options:\n    k\x7f: &a v\u0080\n    other: *a\n".encode()
    schematic = parse_schematic(text)
    assert dict(schematic.overlay.options) == {"k\x7f": "v\u0080", "other": "v\u0080"}
    assert parse_schematic(schematic.canonical()).id == schematic.id


def test_private_use_characters_next_to_c1_are_kept() -> None:
    """The reader's private-use stand-ins never collide with the document's own characters."""
    text = "customization: {extraKernelArgs: ['\U0010007f\x7f', '\U000f0080\u0080']}\n"
    schematic = parse_schematic(text.encode())
    assert schematic.customization.extra_kernel_args == ("\U0010007f\x7f", "\U000f0080\u0080")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"customization: {extraKernelArgs: [a\x01]}",
            "control characters are not allowed (value: 1)",
        ),
        (b"customization: \xef\xbf\xbf", "control characters are not allowed (value: 65535)"),
        (b"customization: \xff", "invalid leading UTF-8 octet (value: 255)"),
        (b"customization: \xc3\x28", "invalid trailing UTF-8 octet (value: 40)"),
        (b"customization: \xc3", "incomplete UTF-8 octet sequence"),
    ],
)
def test_reader_errors_in_go_yaml_v4_words(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_schematic(data, source="s.yaml")
    assert str(info.value) == f"s.yaml: yaml: {message}"


# (NEL is a line break too, but a re-read turns it into "\n", upstream as here.)
@pytest.mark.parametrize("text", ["a\u2028b", "a\u2029", "\u2028\u2029", "x\u2028 \u2029y"])
def test_unicode_line_and_paragraph_separators(text: str) -> None:
    """U+2028/U+2029 are line breaks to YAML: the canonical form must carry them back intact."""
    # Escaped (\u2028): raw, YAML folds them as breaks inside the quotes, upstream as here.
    document = json.dumps({"customization": {"extraKernelArgs": [text]}})
    schematic = parse_schematic(document.encode())
    assert schematic.customization.extra_kernel_args == (text,)
    again = parse_schematic(schematic.canonical())
    assert again == schematic
    assert again.id == schematic.id
    assert b"\n        - " in schematic.canonical()


@given(
    st.text(
        alphabet=st.characters(
            min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters="\x85"
        ),
        max_size=20,
    )
)
def test_any_c1_text_round_trips_through_the_canonical_form(text: str) -> None:
    document = json.dumps({"customization": {"extraKernelArgs": [text]}}, ensure_ascii=False)
    schematic = parse_schematic(document.encode())
    assert parse_schematic(schematic.canonical()) == schematic
    assert parse_schematic(schematic.canonical(), fast=False) == schematic
