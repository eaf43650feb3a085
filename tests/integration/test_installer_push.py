"""`imagefactory push-installer` against a real registry: skopeo reads and copies the pushed index,
the tag is written only after every signature, a signing failure leaves no tag, trixie's skopeo
verifies the signatures, and credentials come from ~/.docker/config.json."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from build_helpers import private_config, write_schematic
from thirdparty_skopeo import Unavailable, obtain

from imagefactory import tools
from imagefactory.cli import main
from imagefactory.config import PushRegistry, load_config
from imagefactory.errors import BuildError, NotFound, ToolError
from imagefactory.installer_image import push_installer
from imagefactory.oci.model import Descriptor
from imagefactory.oci.registry import RegistryTarget
from imagefactory.schematic import parse_schematic
from imagefactory.signing import keys
from imagefactory.signing.cosign import signature_tag
from imagefactory.signing.policy import Verifier
from imagefactory.versions import TalosVersion

SCHEMATIC = "customization:\n  extraKernelArgs:\n    - console=ttyS0\n"
VERSION = "v1.11.5"


@pytest.fixture(scope="module")
def setup(
    sample_release: Path, registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A private config whose `registry:` section names the test registry and a signing key."""
    where = tmp_path_factory.mktemp("push")
    key = keys.generate_key()
    keys.save_private_key(key, where / "push.key")
    keys.save_public_key(key, where / "push.pub")
    section = {"url": f"{registry.host}/talos", "insecure": True}
    section["signing"] = {"keyPath": str(where / "push.key")}
    return private_config(sample_release, where, registry=section), where


def skopeo(*argv: str) -> bytes:
    return subprocess.run(["skopeo", *argv], check=True, capture_output=True, timeout=300).stdout


def test_push_then_skopeo_inspects_and_copies(
    setup: tuple[Path, Path], registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    schematic = write_schematic(tmp_path, SCHEMATIC)
    argv = ["push-installer", "--config", str(config), "--schematic", str(schematic)]
    assert main([*argv, "--version", VERSION]) == 0
    reference = capsys.readouterr().out.strip()
    schematic_id = parse_schematic(SCHEMATIC.encode(), source="t").id
    name, digest = reference.split("@")
    assert name == f"{registry.host}/talos/installer/{schematic_id}:{VERSION}"
    raw = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{name}")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    platforms = [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]]
    assert platforms == ["amd64", "arm64"]
    info = json.loads(
        skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64", f"docker://{name}")
    )
    assert info["Architecture"] == "arm64"
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{name}", f"oci:{tmp_path / 'o'}:x")
    index = json.loads((tmp_path / "o" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest  # copied with its bytes unchanged
    # Pushed again from a fresh store: the same digest (reproducible), the tag unchanged.
    fresh = private_config(
        config, tmp_path / "fresh", registry=yaml.safe_load(config.read_text())["registry"]
    )
    assert (
        main(
            [
                "push-installer",
                "--config",
                str(fresh),
                "--schematic",
                str(schematic),
                "--version",
                VERSION,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == reference


class Recording:
    """A registry target that records manifest writes, and can fail the n-th signature."""

    def __init__(self, inner: RegistryTarget, fail_signature: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.puts: list[tuple[str | None, str]] = []  # (tag, digest)
        self.fail_signature = fail_signature

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    def put_manifest(
        self, repository: str, data: bytes, media_type: str, tag: str | None = None
    ) -> Descriptor:
        if tag is not None and tag.endswith(".sig"):
            if self.fail_signature is not None and self.fail_signature == 0:
                raise BuildError("signature store refused (test)")
            if self.fail_signature is not None:
                self.fail_signature -= 1
        desc = self.inner.put_manifest(repository, data, media_type, tag)
        self.puts.append((tag, desc.digest))
        return desc


@pytest.fixture
def client(registry: Any) -> Iterator[RegistryTarget]:
    with RegistryTarget(registry.host, insecure=True) as target:
        yield target


def test_tag_only_after_every_signature(
    setup: tuple[Path, Path], registry: Any, client: RegistryTarget
) -> None:
    config_path, _ = setup
    config = load_config(config_path)
    schematic = parse_schematic(b"customization:\n  extraKernelArgs: [order-test]\n", source="t")
    recording = Recording(client)
    pushed = push_installer(
        config,
        schematic,
        TalosVersion.parse(VERSION),
        platform="aws",
        target=recording,  # type: ignore[arg-type]
    )
    assert pushed.repository == f"talos/aws-installer/{schematic.id}"
    tags = [tag for tag, _ in recording.puts if tag is not None]
    assert tags[-1] == VERSION and tags.count(VERSION) == 1
    # index and both platform manifests signed, each before the tag
    assert len(pushed.signed) == 3 and pushed.signed[0] == pushed.digest
    assert {signature_tag(d) for d in pushed.signed} <= set(tags[:-1])
    # every untagged manifest (platform manifests, the index) was pushed before any signature
    first_sig = next(i for i, (tag, _) in enumerate(recording.puts) if tag is not None)
    assert pushed.digest in {digest for tag, digest in recording.puts[:first_sig] if tag is None}


@pytest.mark.parametrize("failing", [0, 2])
def test_a_failed_signature_leaves_no_tag(
    setup: tuple[Path, Path], client: RegistryTarget, failing: int
) -> None:
    config = load_config(setup[0])
    text = f"customization:\n  extraKernelArgs: [fail-{failing}]\n".encode()
    schematic = parse_schematic(text, source="t")
    with pytest.raises(BuildError, match="signature store refused"):
        push_installer(
            config,
            schematic,
            TalosVersion.parse(VERSION),
            target=Recording(client, fail_signature=failing),  # type: ignore[arg-type]
        )
    try:
        tags = client.list_tags(f"talos/installer/{schematic.id}")
    except NotFound:
        tags = []  # distribution lists no repository that has no tag yet
    assert VERSION not in tags
    assert len([t for t in tags if t.endswith(".sig")]) == failing


def test_bad_input_exits_2(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    schematic = write_schematic(tmp_path, SCHEMATIC)
    base = ["push-installer", "--config", str(config), "--schematic", str(schematic)]
    assert main([*base, "--version", VERSION, "--platform", "nosuchcloud"]) == 2
    assert 'unknown platform: "nosuchcloud"' in capsys.readouterr().err
    assert main([*base, "--version", VERSION, "--secureboot"]) == 2
    assert "secure boot is disabled" in capsys.readouterr().err


@pytest.mark.may_skip
def test_trixie_skopeo_verifies_the_signatures(
    setup: tuple[Path, Path], registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        verifier = obtain()
    except Unavailable as exc:
        pytest.skip(f"third-party verifier unavailable: {exc}")
    config, where = setup
    schematic = write_schematic(tmp_path, SCHEMATIC)
    argv = ["push-installer", "--config", str(config), "--schematic", str(schematic)]
    assert main([*argv, "--version", VERSION]) == 0
    reference = capsys.readouterr().out.strip()
    (tmp_path / "registries.d").mkdir()
    (tmp_path / "registries.d" / "local.yaml").write_text(
        f"docker:\n  {registry.host}:\n    use-sigstore-attachments: true\n"
    )

    def verify(public_key: Path) -> str:
        policy = {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    registry.host: [
                        {
                            "type": "sigstoreSigned",
                            "keyPath": str(public_key),
                            "signedIdentity": {"type": "matchRepository"},
                        }
                    ]
                },
                "dir": {"": [{"type": "insecureAcceptAnything"}]},
            },
        }
        (tmp_path / "policy.json").write_text(json.dumps(policy))
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        try:
            tools.run(
                [
                    verifier,
                    f"--policy={tmp_path / 'policy.json'}",
                    f"--registries.d={tmp_path / 'registries.d'}",
                    "copy",
                    "--all",
                    "--src-tls-verify=false",
                    f"docker://{reference.split('@')[0]}",
                    f"dir:{out}",
                ]
            )
        except ToolError as exc:
            return exc.stderr_tail
        return ""

    assert verify(where / "push.pub") == ""
    keys.save_public_key(keys.generate_key(), tmp_path / "stranger.pub")
    assert "invalid signature" in verify(tmp_path / "stranger.pub")


def test_credentials_from_docker_config(
    sample_release: Path,
    auth_registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = keys.generate_key()
    keys.save_private_key(key, tmp_path / "push.key")
    registry = PushRegistry.parse(
        f"{auth_registry.host}/talos", insecure=True, signing_key=tmp_path / "push.key"
    )
    config = load_config(private_config(sample_release, tmp_path / "cfg"))
    schematic = parse_schematic(SCHEMATIC.encode(), source="t")
    version = TalosVersion.parse(VERSION)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    with pytest.raises(BuildError, match="needs a username and password"):
        push_installer(config, schematic, version, registry=registry)
    (tmp_path / "docker").mkdir()
    auth = base64.b64encode(f"{auth_registry.user}:{auth_registry.password}".encode()).decode()
    (tmp_path / "docker" / "config.json").write_text(
        json.dumps({"auths": {auth_registry.host: {"auth": auth}}})
    )
    pushed = push_installer(config, schematic, version, registry=registry)
    with RegistryTarget(
        auth_registry.host,
        insecure=True,
        username=auth_registry.user,
        password=auth_registry.password,
    ) as client:
        assert client.resolve(pushed.repository, VERSION).digest == pushed.digest


def test_publish_key_signs_when_the_registry_names_none(
    sample_release: Path, registry: Any, tmp_path: Path
) -> None:
    key = keys.generate_key()
    keys.save_private_key(key, tmp_path / "publish.key")
    config = load_config(
        private_config(
            sample_release,
            tmp_path / "cfg",
            registry={"url": f"{registry.host}/pub", "insecure": True},
            publish={"signingKeyPath": str(tmp_path / "publish.key")},
        )
    )
    schematic = parse_schematic(SCHEMATIC.encode(), source="t")
    pushed = push_installer(config, schematic, TalosVersion.parse(VERSION))
    with RegistryTarget(registry.host, insecure=True) as client:
        verifier = Verifier.with_public_key(key.public_key())
        for digest in pushed.signed:
            verifier.verify(
                client, pushed.repository, digest, f"{registry.host}/{pushed.repository}"
            )
