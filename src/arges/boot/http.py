"""The boot HTTP service (one port, default 8081): scripts, kernels, boot files, and more.

- ``GET /boot.ipxe``: the chain script (:func:`arges.boot.ipxe.chain_script`);
- ``GET /ipxe?uuid=&mac=&arch=&platform=``: the boot decision as an iPXE script, with the
  credential minted for the boot (412 while the Environment is not ready, 403 to a requester
  that is not plausibly that server, 429 over the client's request rate, 503 while the API
  cannot be read);
- ``GET|HEAD /env/<name>/kernel`` and ``/env/<name>/initrd``: verified assets from the cache,
  sent with sendfile from a thread of their own (:mod:`arges.boot.filesend`), with Range
  support;
- ``GET|HEAD /tftp/<file>``: the TFTP root over HTTP, for UEFI HTTP boot.

Other services on the same port (the metadata service's ``/configdata``, the discovery
endpoint) add their routes through ``extra_routes``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

from arges.assets import AssetCache
from arges.boot import ipxe, sockets
from arges.boot.filesend import FILE_SENDER, FileSender, file_response
from arges.boot.tftp import Refused, resolve
from arges.kube.errors import KubeError
from arges.metal.boot import BootDecision
from arges.metrics import Metrics
from arges.metrics.http import asset_bytes_hook
from arges.netguard import ConnectionLimits, GuardedSite
from arges.wire import server_name

log = logging.getLogger(__name__)

RETRY = {"Retry-After": "1"}


def decision_label(decision: BootDecision) -> str:
    """The ``decision`` label of ``arges_boot_requests_total``: agent, target, disk, not-ready
    (and ``refused``, for a requester the credentials' vetting turned away)."""
    if decision.kind == "environment":
        return "target" if decision.target else "agent"
    return decision.kind


class Decider(Protocol):
    """Decides what a booting server gets (see :class:`arges.boot.decider.KubeBootDecider`).

    Raises:
        KubeError: when the state cannot be read or the boot cannot be recorded.
    """

    async def decide(self, uuid: str, client: str, mac: str) -> ipxe.BootAnswer: ...


class Admission(Protocol):
    """Whether a client is within its request rate (see
    :meth:`arges.access.guard.BootGuard.admit`)."""

    def admit(self, client: str, what: str) -> bool: ...


@dataclass(frozen=True)
class HttpConfig:
    """The address servers reach the service at (the only one it listens on), its port."""

    address: str
    port: int = 8081
    tftp_root: Path = Path("/usr/lib/ipxe")
    header_timeout: float = 10.0
    """Seconds a client has to send a request's head (after connecting, or after the last
    response on a kept-alive connection) before the connection is closed."""
    connections_per_client: int = 64
    """Open connections one address may hold; more are refused with a 503."""
    connections: int = 8192
    """Open connections in all: a boot storm holds about two per server, and a client that
    keeps its connection alive between requests one more (at 512, a 2,000-server fleet whose
    simulated machines keep theirs alive stopped at 512 servers)."""


class BootHttp:
    """The aiohttp application of the boot port (see the module docstring)."""

    def __init__(
        self,
        config: HttpConfig,
        decider: Decider,
        assets: AssetCache,
        extra_routes: Sequence[web.RouteDef] = (),
        admission: Admission | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self.decider = decider
        self.admission = admission
        self.assets = assets
        self.extra_routes = list(extra_routes)
        self._runner: web.AppRunner | None = None
        self.port = config.port
        self.limits = ConnectionLimits(config.connections_per_client, config.connections)
        self.files = FileSender()
        """Sends the port's file bodies off the event loop (:mod:`arges.boot.filesend`)."""

    def app(self) -> web.Application:
        """The aiohttp application: ``/boot.ipxe``, ``/ipxe``, ``/env/{name}/{asset}``,
        ``/tftp/{file}`` and the extra routes (discovery, metadata, agent media)."""
        app = web.Application(client_max_size=1 << 20)
        app[FILE_SENDER] = self.files
        app.add_routes(
            [
                web.get("/boot.ipxe", self.boot_ipxe),
                web.get("/ipxe", self.ipxe),
                web.get("/env/{name}/{asset}", self.asset),
                web.get("/tftp/{file:.+}", self.tftp_file),
                *self.extra_routes,
            ]
        )
        app.on_response_prepare.append(asset_bytes_hook(self.metrics))
        return app

    async def start(self) -> None:
        """Listen on the configured address and port (its socket bound by
        :mod:`arges.boot.sockets`), each client's connections limited."""
        cfg = self.config
        runner = web.AppRunner(self.app(), access_log=None, keepalive_timeout=cfg.header_timeout)
        await runner.setup()
        self.files.start()
        self.limits = ConnectionLimits(cfg.connections_per_client, cfg.connections)
        sock = sockets.bound(socket.SOCK_STREAM, cfg.address, cfg.port)
        site = GuardedSite(runner, cfg.address, cfg.port, limits=self.limits, sock=sock)
        await site.start()
        self._runner = runner
        self.port = site.port
        log.info("boot HTTP on %s:%d (servers use %s)", cfg.address, self.port, self.base_url)

    async def stop(self) -> None:
        """Close the listener and its connections, and stop the file sender."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.files.stop()

    @property
    def base_url(self) -> str:
        """The URL servers use, with the port actually bound."""
        return f"http://{self.config.address}:{self.port}"

    async def boot_ipxe(self, request: web.Request) -> web.Response:
        """``/boot.ipxe``: the chain script (:func:`arges.boot.ipxe.chain_script`) that asks
        ``/ipxe`` on each NIC in turn, with the machine's SMBIOS UUID, MAC, arch and platform."""
        log.info("/boot.ipxe to %s", request.remote or "-")
        return web.Response(text=ipxe.chain_script(self.base_url))

    async def ipxe(self, request: web.Request) -> web.Response:
        """``/ipxe?uuid=&mac=&platform=``: the iPXE script of this machine's boot decision
        (:mod:`arges.metal.boot`, rendered by :mod:`arges.boot.ipxe`): an Environment, its
        disk, not ready (412) or refused (403); 429 over the client's request rate, 503 when
        the API cannot be read."""
        uuid = server_name(request.query.get("uuid", "")) or ""
        mac = ipxe.mac_from_query(request.query.get("mac", ""))
        client = request.remote or ""
        platform = request.query.get("platform", "")
        if self.admission is not None and not self.admission.admit(client, "/ipxe"):
            return web.Response(status=429, text="too many requests\n", headers=RETRY)
        try:
            answer = await self.decider.decide(uuid, client, mac)
        except KubeError as exc:
            log.warning("/ipxe for %s from %s: %s", uuid, client, exc)
            self.metrics.boot_request(uuid, mac, client, platform, "unavailable", str(exc))
            return web.Response(status=503, text="Arges cannot reach its API; retry\n")
        script = ipxe.render(answer, base_url=self.base_url, mac=mac)
        if answer.refused:
            self.metrics.boot_request(uuid, mac, client, platform, "refused", answer.refused)
        else:
            decision = answer.decision
            self.metrics.boot_request(
                uuid, mac, client, platform, decision_label(decision), decision.reason
            )
            log.info("/ipxe %s (%s) from %s: %s", uuid or "-", mac or "-", client, decision.reason)
        return web.Response(status=script.status, text=script.body)

    async def asset(self, request: web.Request) -> web.StreamResponse:
        """An Environment's kernel or initrd from the asset cache."""
        name, asset = request.match_info["name"], request.match_info["asset"]
        try:
            cached = self.assets.cached(name, asset)
        except ValueError:
            cached = None
        if cached is None:
            raise web.HTTPNotFound(text=f"{name}/{asset} is not in the asset cache\n")
        return file_response(
            request, cached.path, headers={"Content-Type": "application/octet-stream"}
        )

    async def tftp_file(self, request: web.Request) -> web.StreamResponse:
        """``/tftp/{file}``: a file of the TFTP root over HTTP (404 for a name outside it)."""
        try:
            path = resolve(self.config.tftp_root, request.match_info["file"])
        except Refused as exc:
            raise web.HTTPNotFound(text=f"{exc.message}\n") from exc
        except (ValueError, OSError) as exc:
            # A name no file can have (a NUL byte, too long): nothing to serve.
            raise web.HTTPNotFound(text="no such file\n") from exc
        return file_response(request, path, headers={"Content-Type": "application/octet-stream"})
