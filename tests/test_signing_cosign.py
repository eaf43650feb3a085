"""Cosign signatures in an OCI layout target: manifest shape, recursive signing, appending layers."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from imagefactory.errors import InvalidInput, NotFound
from imagefactory.oci import media
from imagefactory.oci.build import push_image
from imagefactory.oci.digest import sha256_bytes
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor
from imagefactory.signing import cosign, keys
from imagefactory.signing import payload as simple

REPO = "siderolabs/imager"
REF = "127.0.0.1:5000/siderolabs/imager"


def _tree(tmp_path: Path, name: str, content: bytes) -> Path:
    tree = tmp_path / name
    (tree / "usr" / "install").mkdir(parents=True)
    (tree / "usr" / "install" / "file").write_bytes(content)
    return tree


@pytest.fixture
def index(tmp_path: Path, layout: LayoutTarget) -> Descriptor:
    return push_image(
        layout,
        REPO,
        "v1.9.0",
        {
            "amd64": [_tree(tmp_path, "amd64", b"amd64 bits")],
            "arm64": [_tree(tmp_path, "arm64", b"arm64 bits")],
        },
    )


def test_signature_tag() -> None:
    assert cosign.signature_tag("sha256:" + "0f" * 32) == "sha256-" + "0f" * 32 + ".sig"
    with pytest.raises(InvalidInput, match="not a sha256 digest"):
        cosign.signature_tag("sha256-" + "0f" * 32)


def test_sign_writes_cosigns_layout(layout: LayoutTarget, index: Descriptor) -> None:
    key = keys.generate_key()
    signed = cosign.sign_image(layout, REPO, index, key, REF + ":v1.9.0")
    assert signed[0] == index
    assert len(signed) == 3  # index and both platform manifests
    for descriptor in signed:
        _, raw = layout.get_manifest(REPO, cosign.signature_tag(descriptor.digest))
        manifest = json.loads(raw)
        assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
        assert manifest["mediaType"] == media.OCI_MANIFEST
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
        assert list(layer["annotations"]) == ["dev.cosignproject.cosign/signature"]
        with layout.open_blob(REPO, layer["digest"]) as stream:
            payload_bytes = stream.read()
        assert payload_bytes == simple.encode(REF, descriptor.digest)
        signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        key.public_key().verify(signature, payload_bytes, ec.ECDSA(hashes.SHA256()))
        with layout.open_blob(REPO, manifest["config"]["digest"]) as stream:
            config = json.loads(stream.read())
        assert config == {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        }
        assert manifest["config"]["mediaType"] == media.OCI_CONFIG


def test_second_signature_appends_a_layer_and_same_one_does_not(
    layout: LayoutTarget, index: Descriptor
) -> None:
    first, second = keys.generate_key(), keys.generate_key()
    signature = cosign.sign(first, index.digest, REF)
    cosign.attach(layout, REPO, index.digest, signature)
    again = cosign.attach(layout, REPO, index.digest, signature)
    layers = cosign.signature_layers(layout, REPO, index.digest)
    assert layers is not None and len(layers) == 1
    assert again == layout.resolve(REPO, cosign.signature_tag(index.digest))
    cosign.attach(layout, REPO, index.digest, cosign.sign(second, index.digest, REF))
    layers = cosign.signature_layers(layout, REPO, index.digest)
    assert layers is not None and len(layers) == 2
    # both payloads are identical (deterministic), the signatures differ
    assert layers[0].digest == layers[1].digest
    assert layers[0].annotations != layers[1].annotations
    _, raw = layout.get_manifest(REPO, cosign.signature_tag(index.digest))
    config_digest = json.loads(raw)["config"]["digest"]
    with layout.open_blob(REPO, config_digest) as stream:
        config = json.loads(stream.read())
    assert config["rootfs"]["diff_ids"] == [layers[0].digest, layers[1].digest]
    assert len(config["history"]) == 2
    read = [cosign.read_layer(layout, REPO, layer) for layer in layers]
    first.public_key().verify(read[0].signature, read[0].payload, ec.ECDSA(hashes.SHA256()))
    second.public_key().verify(read[1].signature, read[1].payload, ec.ECDSA(hashes.SHA256()))


def test_unsigned_image_has_no_layers(layout: LayoutTarget, index: Descriptor) -> None:
    assert cosign.signature_layers(layout, REPO, index.digest) is None


def test_sign_unknown_digest_is_not_found(layout: LayoutTarget, index: Descriptor) -> None:
    missing = Descriptor(media.OCI_MANIFEST, "sha256:" + "1" * 64, 10)
    with pytest.raises(NotFound):
        cosign.sign_image(layout, REPO, missing, keys.generate_key(), REF)


def _layer(layout: LayoutTarget, data: bytes, **overrides: object) -> Descriptor:
    digest = layout.push_blob_bytes(REPO, data)
    fields: dict[str, object] = {
        "media_type": cosign.SIMPLESIGNING_MEDIA_TYPE,
        "digest": digest,
        "size": len(data),
        "annotations": {cosign.SIGNATURE_ANNOTATION: "MEUCIQ=="},
    }
    fields.update(overrides)
    return Descriptor(**fields)  # type: ignore[arg-type]


def test_read_layer_refusals(layout: LayoutTarget) -> None:
    data = simple.encode(REF, "sha256:" + "2" * 64)
    ok = _layer(layout, data)
    assert cosign.read_layer(layout, REPO, ok).payload == data
    cases = [
        (_layer(layout, data, media_type="application/json"), "media type"),
        (_layer(layout, data, size=len(data) + 1), "does not match its digest"),
        (_layer(layout, data, annotations={}), "no dev.cosignproject.cosign/signature"),
        (
            _layer(layout, data, annotations={cosign.SIGNATURE_ANNOTATION: "*"}),
            "is not base64",
        ),
        (_layer(layout, data, digest=sha256_bytes(b"absent")), "payload blob is missing"),
        (_layer(layout, data, size=cosign.MAX_PAYLOAD_BYTES + 1), "larger than"),
    ]
    for layer, message in cases:
        with pytest.raises(cosign.LayerError, match=message):
            cosign.read_layer(layout, REPO, layer)


def test_read_layer_detects_a_corrupted_blob(layout: LayoutTarget) -> None:
    data = simple.encode(REF, "sha256:" + "2" * 64)
    layer = _layer(layout, data)
    layout.blob_path(layer.digest).write_bytes(data.replace(b"2", b"3"))
    with pytest.raises(cosign.LayerError, match="digest"):
        cosign.read_layer(layout, REPO, layer)


def test_keyless_annotations_round_trip() -> None:
    signature = cosign.Signature(
        b"{}", b"\x30\x01", certificate=b"CERT", chain=b"CHAIN", bundle='{"x":1}'
    )
    annotations = signature.annotations()
    assert list(annotations) == [
        "dev.cosignproject.cosign/signature",
        "dev.sigstore.cosign/bundle",
        "dev.sigstore.cosign/certificate",
        "dev.sigstore.cosign/chain",
    ]
    assert cosign.Signature.from_layer(b"{}", annotations) == signature
