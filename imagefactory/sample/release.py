"""Builds the whole sample release into an OCI layout or a registry, signs it, writes its config.

Order per version: extensions, overlay, catalogs (which name their digests), imager, installer.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imagefactory.errors import InvalidInput
from imagefactory.files import write_atomic
from imagefactory.oci.build import push_image
from imagefactory.oci.layout import LayoutTarget
from imagefactory.oci.model import Descriptor
from imagefactory.oci.registry import RegistryTarget
from imagefactory.oci.target import Target
from imagefactory.platforms import Arch
from imagefactory.sample import catalogs, extensions, imager, installer, overlays, tree
from imagefactory.sample.debian import DebianParts, all_debian_parts
from imagefactory.sample.keys import SampleKeys, make_sample_keys
from imagefactory.sample.versions import DEFAULT_VERSIONS, SampleVersion
from imagefactory.signing import keys
from imagefactory.signing.cosign import sign_image
from imagefactory.signing.policy import SignatureError, Verifier

log = logging.getLogger(__name__)

LAYOUT_DIR = "oci"
PRIVATE_KEY = "cosign.key"
PUBLIC_KEY = "cosign.pub"
CONFIG = "config.yaml"
INDEX = "sample-release.json"

_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_NAMESPACE_RE = re.compile(r"^([a-z0-9]+([._-][a-z0-9]+)*)(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


@dataclass(frozen=True)
class ReleaseRequest:
    """What to build and where: `push` is HOST:PORT (plain HTTP), else a layout in out/oci."""

    out: Path
    versions: tuple[SampleVersion, ...] = tuple(SampleVersion.parse(v) for v in DEFAULT_VERSIONS)
    push: str | None = None
    namespace: str = ""
    arches: tuple[Arch, ...] = (Arch.AMD64, Arch.ARM64)

    def __post_init__(self) -> None:
        if not self.versions:
            raise InvalidInput("the sample release needs at least one version")
        if self.push is not None and not _HOST_RE.match(self.push):
            raise InvalidInput(f"--push {self.push!r} is not HOST:PORT (e.g. 127.0.0.1:5000)")
        if self.namespace and not _NAMESPACE_RE.match(self.namespace):
            raise InvalidInput(
                f"namespace {self.namespace!r} is not a lowercase repository path (e.g. mirror)"
            )

    @property
    def origin(self) -> str:
        """The registry that catalogs and signatures name."""
        return self.push or catalogs.LAYOUT_ORIGIN

    @property
    def source(self) -> str:
        """`sources.registry` of the written config."""
        return self.push or f"oci-layout:{(self.out / LAYOUT_DIR).resolve()}"

    def repository(self, name: str) -> str:
        return f"{self.namespace}/{name}" if self.namespace else name


@dataclass(frozen=True)
class PublishedImage:
    """One pushed image: repository as pushed (namespace included), tag, top digest."""

    repository: str
    tag: str
    digest: str
    media_type: str

    def to_json(self) -> dict[str, str]:
        return {
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "mediaType": self.media_type,
        }


@dataclass(frozen=True)
class Release:
    """What a run produced."""

    request: ReleaseRequest
    images: tuple[PublishedImage, ...]
    config: Path
    public_key: Path
    kernels: Mapping[str, str] = field(default_factory=dict)  # arch -> kernel version

    def digests(self) -> dict[str, str]:
        """`repository:tag` -> digest, for comparing two runs."""
        return {f"{i.repository}:{i.tag}": i.digest for i in self.images}


def load_or_create_key(out: Path) -> keys.PrivateKey:
    """The sample key in out/cosign.key (kept across runs), created on first use."""
    private = out / PRIVATE_KEY
    if private.exists():
        key = keys.load_private_key(private)
    else:
        key = keys.generate_key()
        keys.save_private_key(key, private)
    keys.save_public_key(key, out / PUBLIC_KEY)
    return key


def open_output(request: ReleaseRequest) -> Target:
    if request.push is not None:
        return RegistryTarget(request.push, insecure=True)
    return LayoutTarget(request.out / LAYOUT_DIR)


class _Publisher:
    """Pushes images once each (by repository and tag) and remembers what it pushed."""

    def __init__(self, request: ReleaseRequest, target: Target) -> None:
        self.request = request
        self.target = target
        self.images: dict[tuple[str, str], PublishedImage] = {}

    def push(
        self,
        name: str,
        tag: str,
        layers: Mapping[str, Sequence[Path]],
        *,
        mtime: int,
        config: Mapping[str, Any] | None = None,
    ) -> PublishedImage:
        repository = self.request.repository(name)
        if (repository, tag) in self.images:
            return self.images[(repository, tag)]
        log.info("sample: pushing %s:%s", repository, tag)
        descriptor: Descriptor = push_image(
            self.target, repository, tag, layers, config=config, mtime=mtime, index=True
        )
        image = PublishedImage(repository, tag, descriptor.digest, descriptor.media_type)
        self.images[(repository, tag)] = image
        return image

    def sign_all(self, key: keys.PrivateKey) -> None:
        """Sign every image and its platform manifests, unless our key already signed it."""
        verifier = Verifier.with_public_key(key.public_key())
        signed: set[tuple[str, str]] = set()
        for image in self.images.values():
            if (image.repository, image.digest) in signed:
                continue
            signed.add((image.repository, image.digest))
            reference = f"{self.request.origin}/{image.repository}"
            try:
                verifier.verify(self.target, image.repository, image.digest, reference)
                continue
            except SignatureError:
                pass
            descriptor = self.target.resolve(image.repository, image.digest)
            sign_image(self.target, image.repository, descriptor, key, reference)


def _publish_version(
    version: SampleVersion,
    parts: Mapping[Arch, DebianParts],
    publisher: _Publisher,
    work: Path,
) -> None:
    origin = publisher.request.origin
    arches = [str(arch) for arch in sorted(parts)]

    listed = []
    for ext in extensions.extensions_for(version):
        layers = extensions.extension_layers(ext, version, parts, work)
        image = publisher.push(ext.repository, ext.tag, layers, mtime=extensions.EXTENSION_EPOCH)
        listed.append(
            catalogs.CatalogImage(
                ext.repository, ext.tag, image.digest, extensions.AUTHOR, ext.description
            )
        )
    epoch = version.source_date_epoch
    catalog = tree.materialize(
        catalogs.extensions_catalog_entries(origin, listed), work / "extensions-catalog", epoch
    )
    publisher.push(
        "siderolabs/extensions", version.tag, {a: [catalog] for a in arches}, mtime=epoch
    )

    if version.has_overlays:
        overlay = overlays.OVERLAY
        image = publisher.push(
            overlay.repository,
            overlay.tag,
            overlays.overlay_layers(arches, work),
            mtime=overlays.OVERLAY_EPOCH,
        )
        entry = catalogs.CatalogOverlay(
            overlay.name, catalogs.CatalogImage(overlay.repository, overlay.tag, image.digest)
        )
        overlay_catalog = tree.materialize(
            catalogs.overlays_catalog_entries(origin, [entry]), work / "overlays-catalog", epoch
        )
        publisher.push(
            "siderolabs/overlays", version.tag, {a: [overlay_catalog] for a in arches}, mtime=epoch
        )

    assets = {
        arch: imager.build_assets(version, parts[arch], work / f"assets-{arch}") for arch in parts
    }
    publisher.push(
        "siderolabs/imager",
        version.tag,
        imager.imager_layers(version, parts, assets, work),
        mtime=epoch,
        config=imager.image_config(version, "/bin/imager"),
    )
    publisher.push(
        version.installer_repository,
        version.tag,
        installer.installer_layers(version, parts, assets, work),
        mtime=epoch,
        config=imager.image_config(version, "/bin/installer"),
    )


# The sample config's matrix: small (amd64, no disk image), Secure Boot variants included.
SAMPLE_TARGETS = {
    "platforms": [
        {
            "platform": "metal",
            "archs": ["amd64"],
            "assets": ["kernel", "initramfs", "cmdline", "uki", "iso", "installer", "pxe"],
        }
    ]
}


def config_document(request: ReleaseRequest, sample_keys: SampleKeys) -> dict[str, Any]:
    """A complete pipeline config whose sources are this release, verified with its key.

    Paths are relative to the config, so a copy of the directory works from its new place.
    """
    return {
        "sources": {
            "registry": request.push or f"oci-layout:{LAYOUT_DIR}",
            "namespace": request.namespace,
            "insecure": request.push is not None,
            "verify": {"publicKey": PUBLIC_KEY},
        },
        "versions": {"list": [v.tag for v in request.versions], "broken": []},
        "schematics": "schematics",
        "public": "public",
        "store": "store",
        "externalURL": "http://127.0.0.1:8080/",
        "secureBoot": sample_keys.secureboot_config(),
        "publish": {"signingKeyPath": sample_keys.publish_key},
        "targets": SAMPLE_TARGETS,
    }


def build_release(request: ReleaseRequest, *, cache: Path | None = None) -> Release:
    """Build, push and sign every image of the release; write config.yaml and the index."""
    out = request.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create output directory {out}: {exc.strerror}") from exc
    key = load_or_create_key(out)
    parts = all_debian_parts(request.arches, cache)
    target = open_output(request)
    publisher = _Publisher(request, target)
    for version in request.versions:
        with tempfile.TemporaryDirectory(prefix=f"sample-{version.tag}-") as tmp:
            _publish_version(version, parts, publisher, Path(tmp))
    publisher.sign_all(key)
    if isinstance(target, RegistryTarget):
        target.close()

    config = out / CONFIG
    header = (
        "# The sample release: written by `imagefactory sample-release`.\n"
        "# Its keys (keys/sample-*) are sample keys, made here: never use them for anything real.\n"
    )
    document = config_document(request, make_sample_keys(out))
    write_atomic(config, (header + yaml.safe_dump(document, sort_keys=False)).encode())
    images = tuple(publisher.images.values())
    kernels = {str(arch): parts[arch].kernel_version for arch in sorted(parts)}
    index = {
        "source": request.source,
        "origin": request.origin,
        "namespace": request.namespace,
        "versions": [v.tag for v in request.versions],
        "kernels": kernels,
        "debianPackages": sorted({p for arch in parts for p in parts[arch].packages}),
        "images": [image.to_json() for image in images],
    }
    write_atomic(out / INDEX, (json.dumps(index, indent=2) + "\n").encode())
    return Release(request, images, config, out / PUBLIC_KEY, kernels)
