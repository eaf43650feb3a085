"""Whether to trust an image: verify its cosign signatures by public key or keyless identity.

One Verifier per configured policy; verify() raises SignatureError naming the image and every reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from imagefactory.config import Verification
from imagefactory.errors import BuildError, InvalidInput
from imagefactory.oci.digest import check_digest
from imagefactory.oci.target import Target
from imagefactory.signing import cosign, keyless, keys, tlog
from imagefactory.signing import payload as simple


class SignatureError(BuildError):
    """An image's signatures do not satisfy the policy; the message names the image and why."""


class RejectedError(ValueError):
    """One signature does not satisfy the policy (collected into SignatureError)."""


class Mode(StrEnum):
    PUBLIC_KEY = "public-key"
    KEYLESS = "keyless"
    DISABLED = "disabled"


@dataclass(frozen=True)
class VerifiedSignature:
    """What was verified: the image, how, by whom, and which signature layer vouched for it."""

    image: str
    digest: str
    mode: Mode
    signer: str = ""
    layer_digest: str = ""
    integrated_time: int | None = None


@dataclass(frozen=True)
class Accepted:
    """Who vouched for one accepted signature, and when it was logged (keyless with a log)."""

    signer: str
    integrated_time: int | None = None


class Verifier:
    """A signature policy: a public key, a keyless identity with its roots, or nothing."""

    def __init__(
        self,
        mode: Mode,
        *,
        public_key: ec.EllipticCurvePublicKey | None = None,
        identity: keyless.Identity | None = None,
        roots: Sequence[x509.Certificate] = (),
        log_key: ec.EllipticCurvePublicKey | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if mode is Mode.PUBLIC_KEY and public_key is None:
            raise InvalidInput("public-key verification needs a public key")
        if mode is Mode.KEYLESS and (identity is None or not roots):
            raise InvalidInput("keyless verification needs an identity and a root certificate")
        self.mode = mode
        self.public_key = public_key
        self.identity = identity
        self.roots = tuple(roots)
        self.log_key = log_key
        self._now = now

    @classmethod
    def with_public_key(cls, key: ec.EllipticCurvePublicKey) -> Verifier:
        return cls(Mode.PUBLIC_KEY, public_key=key)

    @classmethod
    def keyless(
        cls,
        identity: keyless.Identity,
        roots: Sequence[x509.Certificate],
        log_key: ec.EllipticCurvePublicKey | None,
    ) -> Verifier:
        return cls(Mode.KEYLESS, identity=identity, roots=roots, log_key=log_key)

    @classmethod
    def disabled(cls) -> Verifier:
        return cls(Mode.DISABLED)

    @classmethod
    def from_config(cls, verification: Verification) -> Verifier:
        """Build from the `sources.verify` section; a key file wins over keyless, as upstream."""
        if verification.disabled:
            return cls.disabled()
        if verification.public_key is not None:
            return cls.with_public_key(keys.load_public_key(verification.public_key))
        config = verification.keyless
        if config is None:
            raise InvalidInput("sources.verify needs publicKey, keyless or disabled: true")
        identity = keyless.Identity(
            issuer=config.issuer,
            subject_regexp=config.subject_regexp,
            issuer_regexp=config.issuer_regexp,
        )
        try:
            root_pem = config.root_certificate.read_bytes()
        except OSError as exc:
            raise InvalidInput(
                f"cannot read root certificate {config.root_certificate}: {exc.strerror}"
            ) from exc
        try:
            roots = keyless.load_certificates(root_pem, str(config.root_certificate))
        except keyless.CertificateError as exc:
            raise InvalidInput(str(exc)) from exc
        log_key = None
        if config.log_public_key is not None:
            log_key = keys.load_public_key(config.log_public_key)
        return cls.keyless(identity, roots, log_key)

    def verify(
        self, target: Target, repository: str, digest: str, docker_reference: str
    ) -> VerifiedSignature:
        """Accept `digest` in `repository` if one signature layer passes the policy.

        `docker_reference` is the repository the signature must name (e.g. `ghcr.io/siderolabs/imager`;
        a tag is ignored; `*/siderolabs/imager` accepts that path under any registry or namespace). Raises SignatureError with every layer's reason otherwise.
        """
        check_digest(digest)
        expected_reference = simple.expected_identity(docker_reference)
        image = f"{target.name}/{repository}@{digest}"
        if self.mode is Mode.DISABLED:
            return VerifiedSignature(image, digest, self.mode)
        try:
            layers = cosign.signature_layers(target, repository, digest)
        except InvalidInput as exc:
            raise SignatureError(f"signature verification failed for {image}: {exc}") from exc
        if not layers:
            raise SignatureError(f"signature verification failed for {image}: no signature")
        reasons = []
        for number, layer in enumerate(layers, 1):
            try:
                signature = cosign.read_layer(target, repository, layer)
                accepted = self.check(signature, digest, expected_reference)
            except (cosign.LayerError, simple.PayloadError, RejectedError) as exc:
                reasons.append(f"signature {number} ({layer.digest[:19]}…): {exc}")
                continue
            return VerifiedSignature(
                image,
                digest,
                self.mode,
                signer=accepted.signer,
                layer_digest=layer.digest,
                integrated_time=accepted.integrated_time,
            )
        raise SignatureError(
            f"signature verification failed for {image}: none of {len(layers)} signature(s) "
            f"was accepted: {'; '.join(reasons)}"
        )

    def check(self, signature: cosign.Signature, digest: str, docker_reference: str) -> Accepted:
        """Check one signature against the policy; RejectedError or PayloadError says why."""
        if self.mode is Mode.DISABLED:
            return Accepted("")
        if self.mode is Mode.KEYLESS:
            accepted = self._check_keyless(signature)
        else:
            assert self.public_key is not None
            _verify_ecdsa(self.public_key, signature)
            accepted = Accepted(f"key {keys.key_id(self.public_key)[:16]}")
        simple.check_claims(simple.decode(signature.payload), digest, docker_reference)
        return accepted

    def _check_keyless(self, signature: cosign.Signature) -> Accepted:
        assert self.identity is not None
        if signature.certificate is None:
            raise RejectedError("no signing certificate (a keyless signature was expected)")
        try:
            leaf, *extra = keyless.load_certificates(signature.certificate, "certificate")
            chain = keyless.load_certificates(signature.chain, "chain") if signature.chain else []
        except keyless.CertificateError as exc:
            raise RejectedError(str(exc)) from exc
        integrated_time = None
        at = self._now()
        if self.log_key is not None:
            if signature.bundle is None:
                raise RejectedError("no transparency log bundle")
            try:
                bundle = tlog.Bundle.parse(signature.bundle)
                tlog.verify_set(bundle, self.log_key)
                tlog.check_body(
                    bundle, signature.signature, signature.payload, leaf.public_bytes(Encoding.DER)
                )
            except tlog.BundleError as exc:
                raise RejectedError(str(exc)) from exc
            integrated_time = bundle.entry.integrated_time
            at = datetime.fromtimestamp(integrated_time, UTC)
        try:
            keyless.verify_chain(leaf, [*extra, *chain], self.roots, at)
            identity = keyless.match_identity(leaf, self.identity)
        except keyless.CertificateError as exc:
            raise RejectedError(str(exc)) from exc
        public_key = leaf.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise RejectedError("signing certificate key is not ECDSA")
        _verify_ecdsa(public_key, signature)
        return Accepted(f"{', '.join(identity.subjects)} ({identity.issuer})", integrated_time)


def _verify_ecdsa(key: ec.EllipticCurvePublicKey, signature: cosign.Signature) -> None:
    try:
        key.verify(signature.signature, signature.payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise RejectedError("signature does not verify over the payload") from exc
