"""The agent ISO per Server, for BMC virtual media: ``GET|HEAD /agent/<uuid>.iso?token=``.

A BMC told to ``InsertMedia`` fetches the image from this URL. Each insertion is a boot, and
gets a credential of its own, as ``/ipxe`` mints one for a network boot
(:mod:`arges.access.guard`): its hash is recorded on the Server before the URL is handed
out, the credential goes into the ISO's kernel command line (``arges.token=``, beside what
:func:`arges.metal.media.agent_media_args` gives: where to register, and the Server's static
network if it has one), and the URL carries it too: the ISO, which holds it, is served only
for the Server's current credential (403 otherwise, and for an unknown UUID). A CD-booted
agent has asked no ``/ipxe``, so its credential is bound to its static address when the
Server has one, else to the address it is first used from.

ISOs are built (:func:`arges.agent.image.iso.build_iso`) from the agent Environment's cached
kernel and initramfs under ``DATA_DIR/media/<digest>.iso``, once per distinct command line
and image; a Server's earlier ISO is removed when a new one replaces it.
:meth:`AgentMedia.url` builds it ahead, so the BMC's fetch never waits on a build (BMCs give
up on slow image servers); after a restart the first fetch builds it again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from arges.access.guard import BootGuard, Refused
from arges.agent.image.debs import BuildError
from arges.agent.image.iso import build_iso
from arges.api.environment import AGENT_ENVIRONMENT, Environment
from arges.api.server import Server
from arges.assets import AssetCache
from arges.boot.filesend import file_response
from arges.kube.client import KubeClient
from arges.kube.errors import KubeError, NotFound
from arges.kube.resources import ENVIRONMENTS, SERVERS
from arges.metal.media import MediaUnavailable, agent_media_args
from arges.wire import server_name

log = logging.getLogger(__name__)


class AgentMedia:
    """Builds, keeps and serves the agent ISOs (see the module docstring). ``base_url``
    gives the boot HTTP service's URL as servers reach it."""

    def __init__(
        self,
        kube: KubeClient,
        assets: AssetCache,
        directory: Path,
        base_url: Callable[[], str],
        guard: BootGuard,
    ) -> None:
        self.kube = kube
        self.guard = guard
        self.assets = assets
        self.directory = directory
        self.base_url = base_url
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._current: dict[str, Path] = {}

    def routes(self) -> list[web.RouteDef]:
        """The route of the agent's boot ISO, ``/agent/{uuid}.iso``."""
        return [web.get("/agent/{uuid}.iso", self.serve)]

    async def prepare(self, uuid: str, token: str) -> Path:
        """The ISO of Server ``uuid`` for the boot of credential ``token``, built if needed.

        Raises:
            NotFound: there is no such Server.
            MediaUnavailable: no agent image is cached yet, the Server's agent network is
                not usable, or the build failed.
            KubeError: the API cannot be read.
        """
        server = Server.from_json(await self.kube.get(SERVERS, uuid))
        try:
            env = Environment.from_json(await self.kube.get(ENVIRONMENTS, AGENT_ENVIRONMENT))
        except NotFound as exc:
            raise MediaUnavailable("there is no agent Environment (no agent image)") from exc
        kernel = self.assets.cached(AGENT_ENVIRONMENT, "kernel")
        initrd = self.assets.cached(AGENT_ENVIRONMENT, "initrd")
        if kernel is None or initrd is None:
            raise MediaUnavailable("the agent image is not in the asset cache yet")
        args = agent_media_args(
            list(env.spec.kernel.args or []), self.base_url(), server.spec.agent_network
        )
        inputs = json.dumps([kernel.sha512, initrd.sha512, args, token])
        path = self.directory / f"{hashlib.sha256(inputs.encode()).hexdigest()[:32]}.iso"
        async with self._locks[path.name]:
            if not path.exists():
                try:
                    await asyncio.to_thread(
                        build_iso, kernel.path, initrd.path, [*args, f"arges.token={token}"], path
                    )
                except BuildError as exc:
                    raise MediaUnavailable(str(exc)) from exc
                # It holds the boot's credential (the data directory is private too).
                path.chmod(0o600)
                log.info(
                    "agent ISO for %s: %s (%.1f MiB), kernel arguments: %s arges.token=***",
                    uuid,
                    path.name,
                    path.stat().st_size / 2**20,
                    " ".join(args),
                )
        previous = self._current.get(uuid)
        self._current[uuid] = path
        if previous is not None and previous != path and previous not in self._current.values():
            previous.unlink(missing_ok=True)
        return path

    async def url(self, uuid: str) -> str:
        """Where a BMC fetches Server ``uuid``'s ISO for a new boot, once it is built: a
        credential is minted and recorded for that boot first (see the module docstring).

        Raises:
            MediaUnavailable: as :meth:`prepare`, and for a missing Server or an API error.
        """
        try:
            server = Server.from_json(await self.kube.get(SERVERS, uuid))
            network = server.spec.agent_network
            static = _address(network.address) if network is not None else ""
            token, patch = self.guard.issue(
                server,
                uuid,
                "agent",
                "",
                network.mac.lower() if network is not None and network.mac else "",
                None,
                dt.datetime.now(dt.UTC),
                addresses=[static] if static else [],
            )
            await self.kube.patch(SERVERS, uuid, {"status": patch}, subresource="status")
            await self.prepare(uuid, token)
        except KubeError as exc:
            raise MediaUnavailable(f"cannot read server {uuid}: {exc}") from exc
        return f"{self.base_url()}/agent/{uuid}.iso?token={token}"

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """``/agent/{uuid}.iso?token=``: the agent ISO for this server, built on first use, only to
        the holder of its agent boot credential (403 otherwise, 429 over the rate, 412 when it
        cannot be built, 503 when the API cannot be read)."""
        uuid = server_name(request.match_info["uuid"]) or ""
        token = request.query.get("token", "")
        client = request.remote or ""
        if not self.guard.admit(client, "/agent/iso"):
            raise web.HTTPTooManyRequests(text="too many requests\n", headers={"Retry-After": "1"})
        try:
            await self.guard.verify(uuid, token, ("agent",), client, bound=False)
            path = await self.prepare(uuid, token)
        except Refused as refusal:
            await self.guard.refused("/agent/iso", "MediaRefused", uuid, client, refusal)
            raise web.HTTPForbidden(text="forbidden\n") from None
        except NotFound as exc:
            raise web.HTTPForbidden(text="forbidden\n") from exc
        except MediaUnavailable as exc:
            raise web.HTTPPreconditionFailed(text=f"{exc}\n") from exc
        except KubeError as exc:
            raise web.HTTPServiceUnavailable(text="Arges cannot reach its API; retry\n") from exc
        log.info("%s %s to %s", request.method, request.path, client or "-")
        return file_response(request, path, headers={"Content-Type": "application/octet-stream"})


def _address(interface: str) -> str:
    """The address of ``spec.agentNetwork.address`` ("" when it is not one: the build says
    why)."""
    try:
        return str(ipaddress.IPv4Interface(interface).ip)
    except ValueError:
        return ""
