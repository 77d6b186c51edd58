"""A plain-HTTP proxy in front of an API server, for tests that watch or hold what a client
of it (``arges up --kubeconfig``, a plane with an external API) sends."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from arges.apiserver.server import ApiServer

HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HoldingProxy:
    """Plain HTTP in front of the API server; a request ``hold`` selects is never forwarded.
    ``seen`` records every request's method and path with its query, in order."""

    def __init__(self, upstream: ApiServer) -> None:
        self.upstream = upstream.url
        self.tls = ssl.create_default_context(cafile=str(upstream.config.data_dir / "pki/ca.crt"))
        self.hold: Callable[[str, str, bytes], bool] | None = None
        self.delay: Callable[[str, str], float] | None = None
        """Seconds to wait before forwarding a request (method, path with its query)."""
        self.held = asyncio.Event()
        self.seen: list[tuple[str, str]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.tls))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs))
        body = await request.read()
        if self.delay is not None:
            await asyncio.sleep(self.delay(request.method, request.path_qs))
        if self.hold is not None and self.hold(request.method, request.path, body):
            self.held.set()
            await asyncio.Event().wait()
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body or None,
            timeout=aiohttp.ClientTimeout(total=None),
        ) as resp:
            out = web.StreamResponse(
                status=resp.status,
                headers={k: v for k, v in resp.headers.items() if k.lower() not in HOP},
            )
            await out.prepare(request)
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    def kubeconfig(self, path: Path, token: str) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "c", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
                    ],
                    "users": [{"name": "u", "user": {"token": token}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        return path
