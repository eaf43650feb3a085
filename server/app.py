"""The service tree: one MultiService with the HTTP site, the TFTP server and the build pool."""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
from collections.abc import Hashable
from dataclasses import dataclass
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
from server.cluster import AdoptedPort, SharedBuilds, SharedMetrics
from server.fastpath import FastSite
from server.logs import text_observer
from server.metrics import Metrics
from server.pxe import IPXE_BINARIES, chain_scripts
from server.registry import Registry
from server.routes import Api, routes
from server.schematics import Schematics
from server.tftp import TftpServer
from server.web import FactorySite, Router

# "0" turns the fast path off: tests compare its answers with the normal path's.
FAST_PATH_SWITCH = "IMAGEFACTORY_FAST_PATH"


def tftp_files(config: Config, base_url: str) -> dict[str, bytes | Path]:
    """What TFTP serves: Debian's iPXE binaries that exist, and the generated chain scripts."""
    table: dict[str, bytes | Path] = {}
    for name in IPXE_BINARIES:
        path = (config.server.ipxe_dir / name).resolve()
        if path.is_file():
            table[name] = path
    table.update(chain_scripts(config.server, base_url))
    return table


@dataclass(frozen=True)
class WorkerSeat:
    """One of several HTTP processes: its number, the shared run directory, the inherited socket."""

    index: int
    run_dir: Path
    listening_fd: int


def make_service(
    config: Config, *, external_url: str | None = None, seat: WorkerSeat | None = None
) -> service.MultiService:
    """The whole server for `config`; start it with the reactor (twistd or `imagefactory serve`).

    With `seat`, one worker of several: HTTP on the inherited socket, builds and metrics shared
    through the run directory, no TFTP (the supervisor keeps it in one process).
    """
    if external_url:
        config = dataclasses.replace(config, external_url=external_url)
    metrics = Metrics()
    top = service.MultiService()
    shared = None
    if seat is not None:
        shared = SharedBuilds.under(seat.run_dir, config.server.build_concurrency)
        SharedMetrics(metrics, seat.run_dir, f"worker{seat.index}").setServiceParent(top)
    builds = Builds(config, metrics, config.external_url, shared)
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
    router = Router(routes(api), files.send_file)
    site: FactorySite
    if os.environ.get(FAST_PATH_SWITCH, "1") != "0":
        site = FastSite(router, config.server, metrics, lambda: answer_state(assets, catalog))
    else:
        site = FactorySite(router, config.server, metrics)
    if seat is not None:
        AdoptedPort(seat.listening_fd, site).setServiceParent(top)
        return top
    http = strports.service(config.server.http, site, reactor=reactor)
    # A port that cannot be bound fails `serve` at once instead of being logged and ignored.
    http._raiseSynchronously = True
    http.setServiceParent(top)
    tftp = tftp_service(config, metrics)
    if tftp is not None:
        tftp.setServiceParent(top)
    return top


def answer_state(assets: Assets, catalog: Catalog) -> Hashable | None:
    """What every answer depends on besides its own file: the published generation and the lock
    (None: no answer is kept, `public` being a plain directory)."""
    generation = assets.generation()
    return None if generation is None else (generation, catalog.stamp())


def tftp_service(config: Config, metrics: Metrics) -> service.Service | None:
    """The TFTP server on UDP, or None when no port is configured."""
    if not config.server.tftp_port:
        return None
    tftp = TftpServer(
        tftp_files(config, config.external_url), config.server.tftp_interface, metrics
    )
    return internet.UDPServer(config.server.tftp_port, tftp, interface=config.server.tftp_interface)


def serve(config: Config, *, external_url: str | None = None) -> None:
    """Run the server in this process until SIGTERM or SIGINT; stopping the tree stops builds
    and cleans up. (`server.workers` over 1: server.supervisor.supervise instead.)"""
    run(make_service(config, external_url=external_url))


def run(top: service.Service) -> None:
    """Start `top`, then the reactor, until SIGTERM or SIGINT stops both."""
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
