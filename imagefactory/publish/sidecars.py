"""Beside every published file: upstream's `.sha256`/`.sha512` lines and a cosign-compatible signature.

The signature (`.sig`) is what `cosign sign-blob` writes: base64 of the DER ECDSA-P256 signature of
the file's SHA-256; `openssl dgst -sha256 -verify signing-key.pub -signature <(base64 -d F.sig) F` checks it.
"""

from __future__ import annotations

import base64
import posixpath
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from imagefactory import tree
from imagefactory.publish.content import Digests
from imagefactory.signing.keys import PrivateKey


def signature(key: PrivateKey, sha256_hex: str) -> bytes:
    """The `.sig` file's bytes for a file whose SHA-256 is `sha256_hex` (no re-read of the file)."""
    der = key.sign(bytes.fromhex(sha256_hex), ec.ECDSA(Prehashed(hashes.SHA256())))
    return base64.b64encode(der)


def sidecars(path: str, digests: Digests, key: PrivateKey) -> dict[str, bytes]:
    """tree path -> bytes of each sidecar of the file published at `path`."""
    name = posixpath.basename(path)
    return {
        path + ".sha256": tree.checksum_line(digests.sha256, name).encode(),
        path + ".sha512": tree.checksum_line(digests.sha512, name).encode(),
        path + tree.SIGNATURE_SUFFIX: signature(key, digests.sha256),
    }


def load_signing_key(path: Path | None, what: str) -> PrivateKey:
    from imagefactory.errors import InvalidInput  # noqa: PLC0415
    from imagefactory.signing.keys import load_private_key  # noqa: PLC0415

    if path is None:
        raise InvalidInput(
            f"{what}: published files are signed: set publish.signingKeyPath "
            "(or registry.signing.keyPath) in the config"
        )
    return load_private_key(path)
