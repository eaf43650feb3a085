"""The service tree: one MultiService with the HTTP site, the TFTP server and the build pool."""

from __future__ import annotations

import dataclasses
import gc
import sys
from pathlib import Path

from twisted.application import internet, service, strports
from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.logger import globalLogBeginner

from imagefactory.config import Config
from imagefactory.errors import FactoryError
from server import files
from server.assets import Assets
from server.builds import Builds
from server.catalog import Catalog
from server.logs import text_observer
from server.metrics import Metrics
from server.pxe import IPXE_BINARIES, chain_scripts
from server.registry import Registry
from server.routes import Api, routes
from server.schematics import Schematics
from server.tftp import TftpServer
from server.web import FactorySite, Router


def tftp_files(config: Config, base_url: str) -> dict[str, bytes | Path]:
    """What TFTP serves: Debian's iPXE binaries that exist, and the generated chain scripts."""
    table: dict[str, bytes | Path] = {}
    for name in IPXE_BINARIES:
        path = (config.server.ipxe_dir / name).resolve()
        if path.is_file():
            table[name] = path
    table.update(chain_scripts(config.server, base_url))
    return table


def make_service(config: Config, *, external_url: str | None = None) -> service.MultiService:
    """The whole server for `config`; start it with the reactor (twistd or `imagefactory serve`)."""
    if external_url:
        config = dataclasses.replace(config, external_url=external_url)
    metrics = Metrics()
    top = service.MultiService()
    builds = Builds(config, metrics, config.external_url)
    builds.setServiceParent(top)
    schematics = Schematics(config)
    catalog = Catalog(config)
    assets = Assets(config, schematics, catalog, builds)
    registry = Registry(assets, schematics, catalog, builds)
    api = Api(
        assets=assets,
        schematics=schematics,
        catalog=catalog,
        registry=registry,
        metrics=metrics,
        pxe_base_url=config.external_url,
    )
    site = FactorySite(Router(routes(api), files.send_file), config.server, metrics)
    http = strports.service(config.server.http, site, reactor=reactor)
    # A port that cannot be bound fails `serve` at once instead of being logged and ignored.
    http._raiseSynchronously = True
    http.setServiceParent(top)
    if config.server.tftp_port:
        tftp = TftpServer(
            tftp_files(config, config.external_url), config.server.tftp_interface, metrics
        )
        udp = internet.UDPServer(
            config.server.tftp_port, tftp, interface=config.server.tftp_interface
        )
        udp.setServiceParent(top)
    return top


def serve(config: Config, *, external_url: str | None = None) -> None:
    """Run the server until SIGTERM or SIGINT; stopping the tree stops builds and cleans up."""
    top = make_service(config, external_url=external_url)
    globalLogBeginner.beginLoggingTo([text_observer(sys.stderr)], redirectStandardIO=False)
    try:
        top.startService()
    except CannotListenError as exc:
        raise FactoryError(f"cannot listen: {exc}") from None
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    # Everything loaded so far lives as long as the process: full collections skip it, which keeps
    # their pauses (a tail-latency cost under load) to the objects requests make.
    gc.collect()
    gc.freeze()
    reactor.run()
