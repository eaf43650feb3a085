"""A third-party verifier (containers/image in Debian trixie's skopeo 1.18) judges our signatures.

A policy-checked `skopeo copy` accepts what we sign and rejects unsigned or wrongly signed images.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from signing_testca import EPOCH, SigningCA, SigningLog, keyless_sign
from thirdparty_skopeo import Unavailable, obtain

from imagefactory import tools
from imagefactory.errors import ToolError
from imagefactory.oci.build import push_image
from imagefactory.oci.model import Descriptor
from imagefactory.oci.registry import RegistryTarget
from imagefactory.signing import cosign, keys

SIGNER = "releasemgr@siderolabs.com"
# The verifier comes from Debian trixie's archive, not from the project's set-up.
pytestmark = pytest.mark.may_skip


@pytest.fixture(scope="module")
def skopeo() -> Path:
    try:
        return obtain()
    except Unavailable as exc:
        pytest.skip(f"third-party verifier unavailable: {exc}")


@pytest.fixture
def target(registry: Any) -> Iterator[RegistryTarget]:
    with RegistryTarget(registry.host, insecure=True) as client:
        yield client


def _push(target: RegistryTarget, tmp_path: Path, repository: str) -> Descriptor:
    trees = {}
    for arch in ("amd64", "arm64"):
        tree = tmp_path / "trees" / arch
        (tree / "etc").mkdir(parents=True, exist_ok=True)
        (tree / "etc" / "os-release").write_text(f"ID=talos\nARCH={arch}\n")
        trees[arch] = [tree]
    return push_image(target, repository, "v1.9.0", trees)


def _copy(skopeo: Path, tmp_path: Path, host: str, requirement: dict[str, Any], image: str) -> str:
    """Run a policy-checked `skopeo copy --all`; return "" on acceptance, else skopeo's stderr."""
    (tmp_path / "registries.d").mkdir(exist_ok=True)
    (tmp_path / "registries.d" / "local.yaml").write_text(
        f"docker:\n  {host}:\n    use-sigstore-attachments: true\n"
    )
    policy = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {host: [{**requirement, "signedIdentity": {"type": "matchRepository"}}]},
            "dir": {"": [{"type": "insecureAcceptAnything"}]},
        },
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    try:
        tools.run(
            [
                skopeo,
                f"--policy={tmp_path / 'policy.json'}",
                f"--registries.d={tmp_path / 'registries.d'}",
                "copy",
                "--all",
                "--src-tls-verify=false",
                f"docker://{image}",
                f"dir:{out}",
            ]
        )
    except ToolError as exc:
        return exc.stderr_tail
    return ""


def test_skopeo_accepts_our_key_signatures_and_rejects_others(
    skopeo: Path, target: RegistryTarget, tmp_path: Path
) -> None:
    host = target.name
    key, stranger = keys.generate_key(), keys.generate_key()
    keys.save_public_key(key, tmp_path / "cosign.pub")
    requirement = {"type": "sigstoreSigned", "keyPath": str(tmp_path / "cosign.pub")}

    signed = _push(target, tmp_path, "thirdparty/signed")
    cosign.sign_image(target, "thirdparty/signed", signed, key, f"{host}/thirdparty/signed")
    assert _copy(skopeo, tmp_path, host, requirement, f"{host}/thirdparty/signed:v1.9.0") == ""
    assert (
        _copy(skopeo, tmp_path, host, requirement, f"{host}/thirdparty/signed@{signed.digest}")
        == ""
    )

    unsigned = _push(target, tmp_path, "thirdparty/unsigned")
    assert unsigned.digest == signed.digest  # same content, other repository
    rejected = _copy(skopeo, tmp_path, host, requirement, f"{host}/thirdparty/unsigned:v1.9.0")
    assert "A signature was required, but no signature exists" in rejected

    wrong = _push(target, tmp_path, "thirdparty/wrong")
    cosign.sign_image(target, "thirdparty/wrong", wrong, stranger, f"{host}/thirdparty/wrong")
    rejected = _copy(skopeo, tmp_path, host, requirement, f"{host}/thirdparty/wrong:v1.9.0")
    assert "invalid signature when validating ASN.1 encoded signature" in rejected

    # Signed by the right key but for another repository: the identity is checked too.
    moved = _push(target, tmp_path, "thirdparty/moved")
    cosign.sign_image(target, "thirdparty/moved", moved, key, f"{host}/thirdparty/elsewhere")
    rejected = _copy(skopeo, tmp_path, host, requirement, f"{host}/thirdparty/moved:v1.9.0")
    assert "is not accepted" in rejected


def test_skopeo_accepts_our_keyless_signatures(
    skopeo: Path, target: RegistryTarget, tmp_path: Path
) -> None:
    host = target.name
    ca, log = SigningCA.create(), SigningLog.create()
    (tmp_path / "fulcio.pem").write_bytes(ca.root.public_bytes(Encoding.PEM))
    keys.save_public_key(log.key, tmp_path / "rekor.pub")

    keys.save_public_key(SigningLog.create().key, tmp_path / "other-rekor.pub")

    def requirement(email: str, rekor: str = "rekor.pub") -> dict[str, Any]:
        return {
            "type": "sigstoreSigned",
            "fulcio": {
                "caPath": str(tmp_path / "fulcio.pem"),
                "oidcIssuer": "https://accounts.google.com",
                "subjectEmail": email,
            },
            "rekorPublicKeyPath": str(tmp_path / rekor),
        }

    def sign_all(repository: str, signed_at: datetime) -> str:
        index = _push(target, tmp_path, repository)
        _, raw = target.get_manifest(repository, index.digest)
        for digest in [index.digest, *(m["digest"] for m in json.loads(raw)["manifests"])]:
            signature = keyless_sign(
                ca, log, digest, f"{host}/{repository}", email=SIGNER, signed_at=signed_at
            )
            cosign.attach(target, repository, digest, signature)
        return f"{host}/{repository}:v1.9.0"

    image = sign_all("thirdparty/keyless", EPOCH + timedelta(minutes=1))
    assert _copy(skopeo, tmp_path, host, requirement(SIGNER), image) == ""
    rejected = _copy(skopeo, tmp_path, host, requirement("someone@else.org"), image)
    assert 'Required email \\"someone@else.org\\" not found' in rejected
    rejected = _copy(skopeo, tmp_path, host, requirement(SIGNER, "other-rekor.pub"), image)
    assert "cryptographic signature verification of Rekor SET failed" in rejected
    # logged after the 10-minute certificate expired
    late = sign_all("thirdparty/keyless-late", EPOCH + timedelta(minutes=30))
    rejected = _copy(skopeo, tmp_path, host, requirement(SIGNER), late)
    assert "certificate has expired or is not yet valid" in rejected
