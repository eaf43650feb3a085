"""Extension images of the sample release, one table of specs and the trees they become.

Each image root is `manifest.yaml` + `rootfs/`, built per Talos version like upstream's per-version tags.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from imagefactory.platforms import Arch
from imagefactory.sample import tree
from imagefactory.sample.debian import DebianParts
from imagefactory.sample.versions import SampleVersion

AUTHOR = "Sidero Labs (sample)"

# One fixed mtime for all extension images (2024-01-01): a tag shared by several Talos versions
# (iscsi-tools:v0.1.6) must name the same digest in every catalog.
EXTENSION_EPOCH = 1704067200


@dataclass(frozen=True)
class Extension:
    """One extension image as built for one Talos version."""

    name: str  # repository name under siderolabs/
    tag: str
    constraint: str  # compatibility.talos.version
    description: str
    rootfs: Callable[[SampleVersion, DebianParts], list[tree.Entry]]

    @property
    def repository(self) -> str:
        return f"siderolabs/{self.name}"

    def manifest(self) -> dict[str, object]:
        return {
            "version": "v1alpha1",
            "metadata": {
                "name": self.name,
                "version": self.tag,
                "author": AUTHOR,
                "description": self.description,
                "compatibility": {"talos": {"version": self.constraint}},
            },
        }

    def entries(self, version: SampleVersion, parts: DebianParts) -> list[tree.Entry]:
        manifest = yaml.safe_dump(self.manifest(), sort_keys=False, default_flow_style=False)
        rootfs = [
            tree.Entry(f"rootfs/{e.path}", e.mode, e.data, e.source, e.link, e.directory)
            for e in self.rootfs(version, parts)
        ]
        return [tree.file("manifest.yaml", manifest), tree.directory("rootfs"), *rootfs]


def blob(label: str, size: int) -> bytes:
    """Deterministic filler bytes standing in for a binary blob."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _iscsi_rootfs(version: SampleVersion, parts: DebianParts) -> list[tree.Entry]:
    iscsid = "#!/bin/sh\n# sample iscsid: stands in for open-iscsi's daemon\necho iscsid sample\n"
    return [
        tree.file("usr/local/sbin/iscsid", iscsid, 0o755),
        tree.file("usr/local/etc/iscsi/iscsid.conf", "node.startup = automatic\n"),
    ]


# (family-model-stepping file name, size): Intel's per-CPU file naming.
_INTEL_BLOBS = (("06-55-04", 3072), ("06-8f-08", 2048))


def _intel_ucode_rootfs(version: SampleVersion, parts: DebianParts) -> list[tree.Entry]:
    return [
        tree.file(f"{version.firmware_path}/intel-ucode/{name}", blob(f"intel-ucode/{name}", size))
        for name, size in _INTEL_BLOBS
    ]


def _dummy_rootfs(version: SampleVersion, parts: DebianParts) -> list[tree.Entry]:
    module = f"{version.modules_path}/{parts.kernel_version}/extras/{parts.small_module.name}"
    return [tree.copy(module, parts.small_module)]


def _gvisor_rootfs(version: SampleVersion, parts: DebianParts) -> list[tree.Entry]:
    runsc = "#!/bin/sh\n# sample runsc: stands in for gVisor's runtime\necho runsc sample\n"
    cri = (
        '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc]\n'
        '  runtime_type = "io.containerd.runsc.v1"\n'
    )
    return [
        tree.file("usr/local/bin/runsc", runsc, 0o755),
        tree.file("etc/cri/conf.d/gvisor.part", cri),
    ]


def extensions_for(version: SampleVersion) -> tuple[Extension, ...]:
    """The extensions of one version's catalog, sorted by name.

    gvisor is listed for every version, the oldest too, so its constraint check is reachable.
    """
    # Firmware moved under /usr in 1.10, so intel-ucode has one build per layout.
    ucode_tag, ucode_min = ("20250211", "v1.10.0") if version.usr_merged else ("20240312", "v1.5.0")
    return (
        Extension(
            "dummy-module",
            f"1.0.0-{version.tag}",
            f">= {version.tag}",
            "Kernel module dummy.ko (network dummy device) built for this Talos kernel (sample).",
            _dummy_rootfs,
        ),
        Extension(
            "gvisor",
            "20240826.0",
            ">= v1.9.0",
            "gVisor container runtime (sample: needs Talos v1.9.0 or later).",
            _gvisor_rootfs,
        ),
        Extension(
            "intel-ucode",
            ucode_tag,
            f">= {ucode_min}",
            "Intel CPU microcode (sample blobs).",
            _intel_ucode_rootfs,
        ),
        Extension(
            "iscsi-tools",
            "v0.1.6",
            ">= v1.5.0",
            "iSCSI tools: iscsid and its configuration (sample).",
            _iscsi_rootfs,
        ),
    )


def extension_layers(
    extension: Extension,
    version: SampleVersion,
    parts: Mapping[Arch, DebianParts],
    work: Path,
) -> dict[str, list[Path]]:
    """One single-layer tree per platform."""
    epoch = EXTENSION_EPOCH
    return {
        str(arch): [
            tree.materialize(
                extension.entries(version, parts[arch]),
                work / f"ext-{extension.name}-{arch}",
                epoch,
            )
        ]
        for arch in sorted(parts)
    }
