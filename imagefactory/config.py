"""The factory's configuration: config/config.yaml, checked against its JSON Schema, as dataclasses.

Every error names the file, the field and the line; nothing is built from an unchecked config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from imagefactory.errors import InvalidInput
from imagefactory.files import read_bounded
from imagefactory.signing.identity import DEFAULT_ISSUER, DEFAULT_SUBJECT_REGEXP
from imagefactory.versions import TalosVersion
from imagefactory.yamlload import YamlPath, limits, load_plain

# Shipped inside the package (workflow/schemas links to it for Snakemake's validate).
SCHEMA_RESOURCE = ("imagefactory.schemas", "config.schema.yaml")
LOCK_FILE_NAME = "sources.lock.json"
LAYOUT_PREFIX = "oci-layout:"


@dataclass(frozen=True)
class Components:
    imager: str = "siderolabs/imager"
    installer_base: str = "siderolabs/installer-base"
    installer: str = "siderolabs/installer"
    extensions: str = "siderolabs/extensions"
    overlays: str = "siderolabs/overlays"


@dataclass(frozen=True)
class KeylessIdentity:
    issuer: str
    issuer_regexp: str
    subject_regexp: str
    root_certificate: Path
    log_public_key: Path | None


@dataclass(frozen=True)
class Verification:
    public_key: Path | None = None
    keyless: KeylessIdentity | None = None
    disabled: bool = False

    def describe(self) -> str:
        if self.public_key is not None:
            return f"public key {self.public_key}"
        if self.keyless is not None:
            return f"keyless identity {self.keyless.subject_regexp} from {self.keyless.issuer}"
        return "disabled"


@dataclass(frozen=True)
class Sources:
    registry: str
    namespace: str
    insecure: bool
    username: str | None
    password_env: str | None
    components: Components
    verify: Verification

    @property
    def layout_path(self) -> Path | None:
        """The OCI layout directory when the source is one, else None (a registry)."""
        if self.registry.startswith(LAYOUT_PREFIX):
            return Path(self.registry[len(LAYOUT_PREFIX) :])
        return None

    def repository(self, name: str) -> str:
        """Where upstream's `siderolabs/...` repository lives in this source."""
        return f"{self.namespace.strip('/')}/{name}" if self.namespace.strip("/") else name

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass(frozen=True)
class VersionSelection:
    listed: tuple[str, ...] = ()
    minimum: str | None = None
    broken: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecureBootKeys:
    signing_key: Path
    signing_cert: Path
    pcr_key: Path
    # Pre-built enrollment updates for Secure Boot ISOs; all three or none.
    platform_key: Path | None = None
    key_exchange_key: Path | None = None
    signature_key: Path | None = None


@dataclass(frozen=True)
class PushRegistry:
    """Where installer images are pushed and with which key they are signed (`registry:`)."""

    host: str  # host[:port]
    prefix: str  # repository path before `<image>/<schematic id>`, may be ""
    insecure: bool = False
    username: str | None = None
    password_env: str | None = None
    signing_key: Path | None = None

    @classmethod
    def parse(cls, url: str, **fields: Any) -> PushRegistry:
        host, _, prefix = url.strip().removeprefix("oci://").partition("/")
        if not host:
            raise InvalidInput(f"registry url {url!r} has no host (want host[:port]/prefix)")
        return cls(host=host, prefix=prefix.strip("/"), **fields)

    def repository(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass(frozen=True)
class PxeTarget:
    """What a PXE client boots: a schematic, a Talos version and a platform."""

    schematic: str
    version: str
    platform: str = "metal"


@dataclass(frozen=True)
class ServerSettings:
    """`imagefactory serve`: listeners, PXE targets, on-demand builds and connection limits."""

    http: str = "tcp:8080:interface=127.0.0.1"
    workers: int = 1  # HTTP processes accepting on the one listening socket
    tftp_port: int = 0
    tftp_interface: str = "127.0.0.1"
    ipxe_dir: Path = Path("/usr/lib/ipxe")
    pxe_default: PxeTarget | None = None
    pxe_hosts: tuple[tuple[str, PxeTarget], ...] = ()
    build_concurrency: int = 2
    build_queue: int = 64
    build_timeout: float = 1200.0
    max_connections: int = 1024
    max_body_bytes: int = 1 << 20
    idle_timeout: float = 60.0
    request_timeout: float = 15.0
    stalled_timeout: float = 60.0


# Asset kinds a target row may name; `default` is all of them (disk: the platform's own format).
TARGET_KINDS = ("kernel", "initramfs", "cmdline", "uki", "iso", "disk", "installer", "pxe")


@dataclass(frozen=True)
class TargetRow:
    """One platform of the target matrix: its arches and which asset kinds (or `all` upstream offers)."""

    platform: str
    archs: tuple[str, ...] = ("amd64", "arm64")
    assets: str | tuple[str, ...] = "default"


@dataclass(frozen=True)
class Targets:
    """What the pipeline builds for every schematic (`targets:`)."""

    versions: tuple[str, ...] = ()  # empty: every locked version
    secureboot: bool | None = None  # None: when Secure Boot keys are configured
    rows: tuple[TargetRow, ...] = (TargetRow("metal"),)


@dataclass(frozen=True)
class PublishSettings:
    """How published files are signed, and what goes to the registry (`publish:`)."""

    signing_key: Path | None = None
    cache: bool = True
    cache_repository: str = "image-factory/cache"
    installers: bool = True


@dataclass(frozen=True)
class SiteSettings:
    """The static web UI (`site:`): which schematics it lists, where unbuilt links go."""

    public_schematics: tuple[str, ...] = ()  # file labels or IDs
    server_url: str | None = None
    registry_host: str | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    sources: Sources
    versions: VersionSelection
    schematics: Path
    public: Path
    store: Path
    external_url: str = "https://localhost/"
    secureboot: SecureBootKeys | None = None
    server: ServerSettings = ServerSettings()
    registry: PushRegistry | None = None
    targets: Targets = Targets()
    publish: PublishSettings = PublishSettings()
    site: SiteSettings = SiteSettings()

    @property
    def lock_path(self) -> Path:
        return self.path.parent / LOCK_FILE_NAME

    @property
    def publish_signing_key(self) -> Path | None:
        """The key that signs published files: publish.signingKeyPath, else the registry's."""
        if self.publish.signing_key is not None:
            return self.publish.signing_key
        return self.registry.signing_key if self.registry is not None else None


@cache
def _schema() -> dict[str, Any]:
    package, name = SCHEMA_RESOURCE
    loaded: dict[str, Any] = yaml.safe_load(resources.files(package).joinpath(name).read_text())
    return loaded


def _load_with_lines(path: Path) -> tuple[Any, dict[YamlPath, int]]:
    """The config as plain data and the line of every path, through the bounded YAML reader."""
    max_bytes = limits().config_bytes
    return load_plain(
        read_bounded(path, max_bytes, "config"), str(path), max_bytes=max_bytes, what="config"
    )


def _line_of(marks: Mapping[YamlPath, int], path: YamlPath) -> int:
    while path not in marks and path:
        path = path[:-1]
    return marks.get(path, 1)


def validate(raw: Any, marks: Mapping[YamlPath, int], source: Path) -> None:
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        error = errors[0]
        where: YamlPath = tuple(error.absolute_path)
        message = error.message
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            where = (*where, sorted(set(error.instance) - set(known))[0])
            message = "unknown field"
        field = ".".join(str(p) for p in where) or "(top level)"
        raise InvalidInput(f"{source}: line {_line_of(marks, where)}: {field}: {message}")


def _check_versions(versions: Mapping[str, Any], marks: Mapping[YamlPath, int], path: Path) -> None:
    """Every version the config names parses as a Talos version, or the error says where."""
    named: list[tuple[YamlPath, Any]] = [(("versions", "minimum"), versions.get("minimum"))]
    for key in ("list", "broken"):
        named += [(("versions", key, i), v) for i, v in enumerate(versions.get(key, ()))]
    for where, value in named:
        if value is None:
            continue
        try:
            TalosVersion.parse(str(value))
        except InvalidInput as exc:
            field = ".".join(map(str, where))
            raise InvalidInput(f"{path}: line {_line_of(marks, where)}: {field}: {exc}") from None


def _source_registry(value: str, base: Path, where: str) -> str:
    """`oci-layout:PATH` (relative to the config, never the working directory) or `host[:port]`."""
    # The OCI package is heavy to import; only a config being checked pays for it.
    from imagefactory.oci.model import HOST_RE  # noqa: PLC0415

    if value.startswith(LAYOUT_PREFIX):
        layout = value[len(LAYOUT_PREFIX) :]
        if not layout:
            raise InvalidInput(f"{where}: sources.registry: oci-layout: needs a path")
        return LAYOUT_PREFIX + str(_path(base, layout))
    if not HOST_RE.match(value):
        shown = value if len(value) <= 80 else f"{value[:80]}..."
        raise InvalidInput(
            f"{where}: sources.registry: want host[:port] (no scheme or path) or "
            f"oci-layout:PATH, not {shown!r}"
        )
    return value


def _path(base: Path, value: str) -> Path:
    candidate = Path(os.path.expanduser(value))
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


def _server(raw: Mapping[str, Any], base: Path) -> ServerSettings:
    defaults = ServerSettings()
    tftp, pxe = raw.get("tftp", {}), raw.get("pxe", {})
    builds, limits = raw.get("builds", {}), raw.get("limits", {})

    def target(entry: Mapping[str, Any]) -> PxeTarget:
        return PxeTarget(entry["schematic"], entry["version"], entry.get("platform", "metal"))

    return ServerSettings(
        http=raw.get("http", defaults.http),
        workers=raw.get("workers", defaults.workers),
        tftp_port=tftp.get("port", defaults.tftp_port),
        tftp_interface=tftp.get("interface", defaults.tftp_interface),
        ipxe_dir=_path(base, tftp["ipxeDir"]) if "ipxeDir" in tftp else defaults.ipxe_dir,
        pxe_default=target(pxe["default"]) if "default" in pxe else None,
        pxe_hosts=tuple(sorted((mac, target(t)) for mac, t in pxe.get("hosts", {}).items())),
        build_concurrency=builds.get("concurrency", defaults.build_concurrency),
        build_queue=builds.get("queue", defaults.build_queue),
        build_timeout=float(builds.get("timeoutSeconds", defaults.build_timeout)),
        max_connections=limits.get("connections", defaults.max_connections),
        max_body_bytes=limits.get("bodyBytes", defaults.max_body_bytes),
        idle_timeout=float(limits.get("idleSeconds", defaults.idle_timeout)),
        request_timeout=float(limits.get("requestSeconds", defaults.request_timeout)),
        stalled_timeout=float(limits.get("stalledSeconds", defaults.stalled_timeout)),
    )


def _push_registry(raw: Mapping[str, Any] | None, base: Path) -> PushRegistry | None:
    if raw is None:
        return None
    key = raw.get("signing", {}).get("keyPath")
    return PushRegistry.parse(
        raw["url"],
        insecure=bool(raw.get("insecure", False)),
        username=raw.get("username"),
        password_env=raw.get("passwordEnv"),
        signing_key=_path(base, key) if key else None,
    )


def _targets(raw: Mapping[str, Any]) -> Targets:
    rows = tuple(
        TargetRow(
            platform=row["platform"],
            archs=tuple(row.get("archs", TargetRow.archs)),
            assets=row["assets"]
            if isinstance(row.get("assets"), str)
            else tuple(row.get("assets", ())) or TargetRow.assets,
        )
        for row in raw.get("platforms", ())
    )
    return Targets(
        versions=tuple(raw.get("versions", ())),
        secureboot=raw.get("secureBoot"),
        rows=rows or Targets.rows,
    )


def _publish(raw: Mapping[str, Any], base: Path) -> PublishSettings:
    key = raw.get("signingKeyPath")
    return PublishSettings(
        signing_key=_path(base, key) if key else None,
        cache=bool(raw.get("cache", True)),
        cache_repository=raw.get("cacheRepository", PublishSettings.cache_repository).strip("/"),
        installers=bool(raw.get("installers", True)),
    )


def load_config(path: Path | str) -> Config:
    """Read, validate and resolve a config file; relative paths are relative to its directory."""
    try:
        path = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        raise InvalidInput(
            f"{path}: cannot read config: too many levels of symbolic links"
        ) from None
    raw, marks = _load_with_lines(path)
    validate(raw, marks, path)
    base = path.parent
    src = raw["sources"]
    registry = _source_registry(
        src["registry"], base, f"{path}: line {_line_of(marks, ('sources', 'registry'))}"
    )
    verify_raw = src["verify"]
    keyless_raw = verify_raw.get("keyless")
    keyless = None
    if keyless_raw is not None:
        log_key = keyless_raw.get("logPublicKey")
        keyless = KeylessIdentity(
            issuer=keyless_raw.get("issuer", DEFAULT_ISSUER),
            issuer_regexp=keyless_raw.get("issuerRegExp", ""),
            subject_regexp=keyless_raw.get("subjectRegExp", DEFAULT_SUBJECT_REGEXP),
            root_certificate=_path(base, keyless_raw["rootCertificate"]),
            log_public_key=_path(base, log_key) if log_key else None,
        )
    public_key = verify_raw.get("publicKey")
    verification = Verification(
        public_key=_path(base, public_key) if public_key else None,
        keyless=keyless,
        disabled=bool(verify_raw.get("disabled", False)),
    )
    comp = src.get("components", {})
    components = Components(
        imager=comp.get("imager", Components.imager),
        installer_base=comp.get("installerBase", Components.installer_base),
        installer=comp.get("installer", Components.installer),
        extensions=comp.get("extensions", Components.extensions),
        overlays=comp.get("overlays", Components.overlays),
    )
    versions = raw["versions"]
    _check_versions(versions, marks, path)
    secureboot = None
    if "secureBoot" in raw:
        sb = raw["secureBoot"]
        secureboot = SecureBootKeys(
            signing_key=_path(base, sb["signingKeyPath"]),
            signing_cert=_path(base, sb["signingCertPath"]),
            pcr_key=_path(base, sb["pcrKeyPath"]),
            platform_key=_path(base, sb["platformKeyPath"]) if "platformKeyPath" in sb else None,
            key_exchange_key=(
                _path(base, sb["keyExchangeKeyPath"]) if "keyExchangeKeyPath" in sb else None
            ),
            signature_key=_path(base, sb["signatureKeyPath"]) if "signatureKeyPath" in sb else None,
        )
    return Config(
        path=path,
        sources=Sources(
            registry=registry,
            namespace=src.get("namespace", ""),
            insecure=bool(src.get("insecure", False)),
            username=src.get("username"),
            password_env=src.get("passwordEnv"),
            components=components,
            verify=verification,
        ),
        versions=VersionSelection(
            listed=tuple(versions.get("list", ())),
            minimum=versions.get("minimum"),
            broken=tuple(versions.get("broken", ())),
        ),
        schematics=_path(base, raw.get("schematics", "schematics")),
        # Not resolved: `public` is a link to the current generation, and must stay the link.
        public=Path(os.path.abspath(base / os.path.expanduser(raw.get("public", "public")))),
        store=_path(base, raw.get("store", "store")),
        external_url=raw.get("externalURL", "https://localhost/"),
        secureboot=secureboot,
        server=_server(raw.get("server", {}), base),
        registry=_push_registry(raw.get("registry"), base),
        targets=_targets(raw.get("targets", {})),
        publish=_publish(raw.get("publish", {}), base),
        site=SiteSettings(
            public_schematics=tuple(raw.get("site", {}).get("publicSchematics", ())),
            server_url=raw.get("site", {}).get("serverURL"),
            registry_host=raw.get("site", {}).get("registryHost"),
        ),
    )
