"""Sign and verify against a real registry: cosign layout on the wire and every refusal by name."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
import requests
from signing_testca import SigningCA, SigningLog, keyless_sign

from imagefactory.oci import media
from imagefactory.oci.build import push_image
from imagefactory.oci.model import Descriptor, canonical_json
from imagefactory.oci.registry import RegistryTarget
from imagefactory.signing import cosign, keyless, keys
from imagefactory.signing import payload as simple
from imagefactory.signing.policy import Mode, SignatureError, Verifier


class RunningRegistry(Protocol):
    """What these tests use of the `registry` fixture of tests/integration/conftest.py."""

    @property
    def host(self) -> str: ...
    @property
    def url(self) -> str: ...
    def blob_data(self, digest: str) -> Path: ...


@pytest.fixture
def target(registry: RunningRegistry) -> Iterator[RegistryTarget]:
    with RegistryTarget(registry.host, insecure=True) as client:
        yield client


def _push(target: RegistryTarget, tmp_path: Path, repository: str) -> Descriptor:
    trees = {}
    for arch in ("amd64", "arm64"):
        tree = tmp_path / repository.replace("/", "_") / arch
        (tree / "usr" / "install" / arch).mkdir(parents=True)
        (tree / "usr" / "install" / arch / "vmlinuz").write_bytes(f"{repository} {arch}".encode())
        trees[arch] = [tree]
    return push_image(target, repository, "v1.9.0", trees)


def _children(target: RegistryTarget, repository: str, index: Descriptor) -> list[str]:
    _, raw = target.get_manifest(repository, index.digest)
    return [entry["digest"] for entry in json.loads(raw)["manifests"]]


def test_sign_recursive_and_verify(
    registry: RunningRegistry, target: RegistryTarget, tmp_path: Path
) -> None:
    repository = "signing/good"
    reference = f"{registry.host}/{repository}"
    index = _push(target, tmp_path, repository)
    key = keys.generate_key()
    signed = cosign.sign_image(target, repository, index, key, f"{reference}:v1.9.0")
    digests = [index.digest, *_children(target, repository, index)]
    assert [d.digest for d in signed] == digests

    verifier = Verifier.with_public_key(key.public_key())
    for digest in digests:
        verified = verifier.verify(target, repository, digest, reference)
        assert verified.image == f"{reference}@{digest}"
        assert verified.mode is Mode.PUBLIC_KEY

        # What another client sees on the wire, read without our client.
        tag = f"sha256-{digest.removeprefix('sha256:')}.sig"
        response = requests.get(
            f"{registry.url}/v2/{repository}/manifests/{tag}",
            headers={"Accept": media.OCI_MANIFEST},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.headers["Content-Type"] == media.OCI_MANIFEST
        manifest = response.json()
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
        blob = requests.get(
            f"{registry.url}/v2/{repository}/blobs/{layer['digest']}", timeout=10
        ).content
        assert blob == simple.encode(reference, digest)
        assert base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])

    tags = target.list_tags(repository)
    assert sorted(t for t in tags if t.endswith(".sig")) == sorted(
        f"sha256-{d.removeprefix('sha256:')}.sig" for d in digests
    )


@pytest.fixture
def signed_image(
    registry: RunningRegistry,
    target: RegistryTarget,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> tuple[str, str, Descriptor]:
    repository = f"signing/{request.node.name.replace('_', '-').lower()}"
    return repository, f"{registry.host}/{repository}", _push(target, tmp_path, repository)


def _refused(target: RegistryTarget, verifier: Verifier, repository: str, digest: str) -> str:
    reference = f"{target.name}/{repository}"
    with pytest.raises(SignatureError) as caught:
        verifier.verify(target, repository, digest, reference)
    message = str(caught.value)
    assert message.startswith(f"signature verification failed for {reference}@{digest}: ")
    return message


def test_missing_signature_is_refused(
    target: RegistryTarget, signed_image: tuple[str, str, Descriptor]
) -> None:
    repository, _, index = signed_image
    verifier = Verifier.with_public_key(keys.generate_key().public_key())
    assert _refused(target, verifier, repository, index.digest).endswith(": no signature")


def test_signature_by_another_key_is_refused(
    target: RegistryTarget, signed_image: tuple[str, str, Descriptor]
) -> None:
    repository, reference, index = signed_image
    cosign.sign_image(target, repository, index, keys.generate_key(), reference)
    verifier = Verifier.with_public_key(keys.generate_key().public_key())
    for digest in [index.digest, *_children(target, repository, index)]:
        assert "signature does not verify over the payload" in _refused(
            target, verifier, repository, digest
        )


def test_signature_for_another_digest_is_refused(
    target: RegistryTarget, signed_image: tuple[str, str, Descriptor]
) -> None:
    repository, reference, index = signed_image
    key = keys.generate_key()
    amd64, arm64 = _children(target, repository, index)
    # a valid signature of the arm64 manifest, stored as if it were amd64's
    cosign.attach(target, repository, amd64, cosign.sign(key, arm64, reference))
    message = _refused(target, Verifier.with_public_key(key.public_key()), repository, amd64)
    assert f"payload signs digest {arm64}, not {amd64}" in message


def test_tampered_payload_is_refused(
    registry: RunningRegistry, target: RegistryTarget, signed_image: tuple[str, str, Descriptor]
) -> None:
    repository, reference, index = signed_image
    key = keys.generate_key()
    cosign.sign_image(target, repository, index, key, reference)
    verifier = Verifier.with_public_key(key.public_key())
    verifier.verify(target, repository, index.digest, reference)

    # Rewrite the .sig manifest to point at an edited payload, keeping the original signature.
    tag = cosign.signature_tag(index.digest)
    _, raw = target.get_manifest(repository, tag)
    manifest = json.loads(raw)
    layer = manifest["layers"][0]
    with target.open_blob(repository, layer["digest"]) as stream:
        original = stream.read()
    forged = original.replace(b'"optional":null', b'"optional":{"x":1}')
    assert forged != original
    layer["digest"] = target.push_blob_bytes(repository, forged)
    layer["size"] = len(forged)
    target.put_manifest(repository, canonical_json(manifest), media.OCI_MANIFEST, tag=tag)
    assert "signature does not verify over the payload" in _refused(
        target, verifier, repository, index.digest
    )

    # A payload blob corrupted inside the registry's storage is caught by its digest.
    registry.blob_data(layer["digest"]).write_bytes(original)
    message = _refused(target, verifier, repository, index.digest)
    assert "digest" in message and layer["digest"] in message


def test_keyless_signature_in_registry(
    target: RegistryTarget, signed_image: tuple[str, str, Descriptor]
) -> None:
    repository, reference, index = signed_image
    ca, log = SigningCA.create(), SigningLog.create()
    for digest in [index.digest, *_children(target, repository, index)]:
        cosign.attach(target, repository, digest, keyless_sign(ca, log, digest, reference))
    verifier = Verifier.keyless(keyless.Identity(), [ca.root], log.key.public_key())
    verified = verifier.verify(target, repository, index.digest, reference)
    assert verified.mode is Mode.KEYLESS
    assert verified.signer == "releasemgr@siderolabs.com (https://accounts.google.com)"

    _, raw = target.get_manifest(repository, cosign.signature_tag(index.digest))
    annotations = json.loads(raw)["layers"][0]["annotations"]
    assert sorted(annotations) == [
        "dev.cosignproject.cosign/signature",
        "dev.sigstore.cosign/bundle",
        "dev.sigstore.cosign/certificate",
        "dev.sigstore.cosign/chain",
    ]

    strangers = Verifier.keyless(
        keyless.Identity(subject_regexp=r"@example\.org$"), [ca.root], log.key.public_key()
    )
    assert "does not match" in _refused(target, strangers, repository, index.digest)
    other_root = Verifier.keyless(
        keyless.Identity(), [SigningCA.create("other").root], log.key.public_key()
    )
    assert "does not chain to the trusted root" in _refused(
        target, other_root, repository, index.digest
    )
