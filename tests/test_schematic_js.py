"""site/static/schematic.js against the Python emitter: same canonical bytes, same IDs.

A seeded generator makes schematics with every field the UI can set, strings drawn from the hard
cases of tests/test_goyaml.py (YAML 1.1 words, numbers as strings, multi-line, controls, unicode)
and random text; one Python process computes what `imagefactory schematic canonical` prints
(the same read_schematic path), one node process runs the ES module on the same JSON.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagefactory.schematic import parse_schematic
from tests.test_goyaml import STRINGS
from tests.test_schematic import VECTORS

MODULE = Path(__file__).resolve().parent.parent / "site" / "static" / "schematic.js"
COUNT = 12_000
NODE = shutil.which("node") or shutil.which("nodejs")

# Reads a JSON array of schematics on stdin, writes [canonicalYAML, schematicID] for each.
RUNNER = """
import { canonicalYAML, schematicID } from %s;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const out = JSON.parse(Buffer.concat(chunks).toString("utf8")).map((s) => {
  try { return [canonicalYAML(s), schematicID(s)]; } catch (e) { return ["ERROR " + e.message, ""]; }
});
process.stdout.write(JSON.stringify(out));
"""

HARD = [value for value, _ in STRINGS] + [
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "N",
    "<<",
    "=",
    "~",
    "null",
    "NULL",
    "true",
    "False",
    "0",
    "-0",
    "+1",
    "0x1F",
    "0o17",
    "0b101",
    "017",
    "08",
    "1_000",
    "1e3",
    "1e500",
    ".5",
    "+.inf",
    "-.INF",
    ".nan",
    "1:20",
    "12:30:45",
    "-1:30",
    "190:20:30.15",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10",
    "2001-02-30",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "a\nb",
    "a\n",
    "a\n\n",
    " a\nb",
    "\nab",
    "\n",
    "a \nb",
    "line1\nline2\n  indented\n",
    "machine:\n    install:\n        disk: /dev/sda\n",
    "\u2028",
    "a\u2029b",
    "a\x85b",
    "\t",
    "a\tb",
    "\x00",
    "\x7f",
    "\x9f",
    "\ufeff",
    "\ufeffx",
    "é",
    "日本語",
    "\U0001f600",
    "a: b",
    "#x",
    "x #y",
    "- x",
    "-",
    "?",
    "? x",
    ":",
    "key:",
    "'",
    '"',
    "it's",
    "a\\b",
    "---",
    "...",
    "--- x",
    " ",
    "  x  ",
    "x" * 129,
    "é" * 70,
]
ALPHABET = (
    "abcXYZ019 -_.:#'\"\\/\t\n\r{}[],&*!|>%@`?=~+"
    "\x00\x01\x1f\x7f\x85\x9f\xa0é日\u2028\u2029\ufeff\U0001f600\U00010000"
)
# Characters a YAML reader refuses raw or folds: written as JSON \\u escapes instead.
_ESCAPE_RAW = re.compile("[\x7f-\x9f\u2028\u2029\ufeff]")


def to_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return _ESCAPE_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def string(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            return self.rng.choice(HARD)
        if r < 0.55:
            return self.rng.choice(HARD) + self.rng.choice(HARD)
        n = self.rng.choice((1, 2, 3, 5, 8, 20))
        return "".join(self.rng.choice(ALPHABET) for _ in range(n))

    def strings(self, most: int) -> list[str]:
        return [self.string() for _ in range(self.rng.randint(0, most))]

    def number(self) -> int | float:
        if self.rng.random() < 0.6:
            return self.rng.choice(
                (0, 1, -1, 255, 4096, 2**53 - 1, -(2**40), self.rng.randint(-999, 99999))
            )
        while True:
            value = self.rng.choice(
                (self.rng.uniform(-1e6, 1e6), self.rng.random() * 1e-7, 1.5, 0.1, 1e21 + 0.5)
            )
            if not value.is_integer():
                return value

    def option(self, depth: int) -> Any:
        r = self.rng.random()
        if depth < 3 and r < 0.15:
            return {self.key(): self.option(depth + 1) for _ in range(self.rng.randint(0, 3))}
        if depth < 3 and r < 0.25:
            return [self.option(depth + 1) for _ in range(self.rng.randint(0, 3))]
        if r < 0.35:
            return self.number()
        if r < 0.42:
            return self.rng.choice((True, False, None))
        return self.string()

    def key(self) -> str:
        r = self.rng.random()
        if r < 0.3:
            return self.rng.choice(
                ("a", "b", "a1", "a10", "a2", "a01", "b0", "x9y", "01", "1", "10", "Z")
            )
        return self.string()

    def schematic(self) -> dict[str, Any]:
        rng = self.rng
        cu: dict[str, Any] = {}
        if rng.random() < 0.2:
            cu["embeddedMachineConfiguration"] = self.string()
        if rng.random() < 0.5:
            cu["extraKernelArgs"] = self.strings(4)
        if rng.random() < 0.3:
            cu["meta"] = [
                {"key": rng.randint(0, 255), "value": self.string()}
                for _ in range(rng.randint(0, 3))
            ]
        if rng.random() < 0.6:
            extensions = (
                self.strings(4)
                if rng.random() < 0.3
                else [
                    f"siderolabs/{rng.choice(('gvisor', 'iscsi-tools', 'amd-ucode', 'intel-ucode', 'zfs'))}"
                    for _ in range(rng.randint(0, 4))
                ]
            )
            cu["systemExtensions"] = {"officialExtensions": sorted(extensions)}
        if rng.random() < 0.3:
            cu["bootloader"] = rng.choice(
                ("none", "grub", "sd-boot", "dual-boot", "GRUB", "Sd-Boot")
            )
        if rng.random() < 0.3:
            sb: dict[str, Any] = {"includeWellKnownCertificates": rng.random() < 0.7}
            if rng.random() < 0.5:
                sb["enrollKeys"] = rng.choice(("off", "manual", "if-safe", "force", self.string()))
            cu["secureboot"] = sb
        if rng.random() < 0.2:
            cu["diskImage"] = {"sectorSize": rng.choice((0, 512, 4096, 2**40))}
        out: dict[str, Any] = {"customization": cu}
        if rng.random() < 0.35:
            overlay: dict[str, Any] = {"image": self.string(), "name": self.string()}
            if rng.random() < 0.6:
                overlay["options"] = {self.key(): self.option(0) for _ in range(rng.randint(0, 5))}
            out["overlay"] = overlay
        return out


def python_canonical(documents: list[str]) -> list[bytes]:
    return [parse_schematic(doc.encode()).canonical() for doc in documents]


def node_canonical(documents: list[str]) -> list[tuple[str, str]]:
    assert NODE, "nodejs is not installed (scripts/apt-packages.txt lists it)"
    script = RUNNER % json.dumps(MODULE.as_uri())
    proc = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        input=("[" + ",".join(documents) + "]").encode(),
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return [tuple(pair) for pair in json.loads(proc.stdout)]


def test_hard_strings_are_all_used() -> None:
    assert len(HARD) > 150


def test_upstream_vectors_in_node() -> None:
    """tests/test_schematic.py's upstream vectors (bodies read as YAML, handed over as JSON)."""
    documents = [json.dumps(yaml.safe_load(body)) for body, _, _ in VECTORS]
    results = node_canonical(documents)
    assert [(c.encode(), sid) for c, sid in results] == [(c, sid) for _, c, sid in VECTORS]


def test_node_matches_python_on_generated_schematics() -> None:
    gen = Generator(20261201)
    documents = [to_json(gen.schematic()) for _ in range(COUNT)]
    # Every hard string once in each position the wizard writes.
    for value in HARD:
        documents.append(
            to_json(
                {
                    "overlay": {
                        "image": value,
                        "name": value,
                        "options": {value: value, "k": [value]},
                    },
                    "customization": {
                        "embeddedMachineConfiguration": value,
                        "extraKernelArgs": [value],
                        "meta": [{"key": 7, "value": value}],
                        "systemExtensions": {"officialExtensions": [value]},
                        "secureboot": {"enrollKeys": value},
                    },
                }
            )
        )
    expected = python_canonical(documents)
    actual = node_canonical(documents)
    differences = [
        (doc, want, got)
        for doc, want, (got, got_id) in zip(documents, expected, actual, strict=True)
        if got.encode() != want or got_id != hashlib.sha256(want).hexdigest()
    ]
    assert len(documents) >= 10_000
    assert not differences, f"{len(differences)} differ, first: {differences[0]!r}"


@pytest.mark.parametrize(
    "document", ['{"customization": {"extraKernelArgs": ["yes", "a\\nb", "12:30"]}}']
)
def test_cli_agrees(tmp_path: Path, document: str) -> None:
    """The command itself, once, on a file: the batch above uses the same parse and emit."""
    path = tmp_path / "s.json"
    path.write_text(document)
    cli = shutil.which(
        "imagefactory", path=str(Path(__file__).resolve().parent.parent / ".venv" / "bin")
    )
    assert cli
    printed = subprocess.run(
        [cli, "schematic", "canonical", str(path)], capture_output=True, check=True
    ).stdout
    assert node_canonical([document])[0][0].encode() == printed
