"""Metrics over HTTP: the ``/metrics`` exposition, its own port, and the boot port's byte count.

``/metrics`` answers in Prometheus' text format. On the API port it needs the admin token
(as kube-apiserver's does); ``arges up --metrics-port`` also serves it on a plain-HTTP port
of its own, without a token, for a Prometheus that scrapes exporters so: it shows counts and
timings, never a secret.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from arges.metrics.registry import Metrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def exposition(metrics: Metrics, token: str | None = None) -> Handler:
    """The ``GET /metrics`` handler of ``metrics``' registry; with ``token``, only for
    requests that bear it (``Authorization: Bearer``)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                return web.Response(status=401, text="Unauthorized: send the admin token\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="use GET\n", headers={"Allow": "GET, HEAD"})
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


def asset_kind(path: str) -> str | None:
    """What a boot-port path serves, as the ``asset`` label: kernel, initrd, tftp, iso."""
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "env" and parts[2] in ("kernel", "initrd"):
        return parts[2]
    if parts[0] == "tftp" and len(parts) > 1:
        return "tftp"
    if parts[0] == "agent" and parts[-1].endswith(".iso"):
        return "iso"
    return None


def asset_bytes_hook(
    metrics: Metrics,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` signal handler counting the bytes of assets answered (the
    Content-Length of each successful or partial answer, as the headers go out)."""

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        kind = asset_kind(request.path)
        length = response.content_length
        if kind is not None and request.method == "GET" and response.status in (200, 206):
            metrics.asset_bytes.labels(kind).inc(length or 0)

    return hook


class MetricsPort:
    """``/metrics`` alone on a plain-HTTP port (``arges up --metrics-port``)."""

    def __init__(self, metrics: Metrics, address: str, port: int) -> None:
        self.metrics = metrics
        self.address = address
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen. Raises OSError when the address cannot be bound."""
        app = web.Application()
        app.router.add_route("*", "/metrics", exposition(self.metrics))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.address, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics", self.address, self.port)

    async def stop(self) -> None:
        """Close the metrics listener and its connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
