"""The agent ISO per Server, for BMC virtual media: ``GET|HEAD /agent/<uuid>.iso``.

A BMC told to ``InsertMedia`` fetches the image from this URL. Each Server's ISO is built
(:func:`arges.agent.image.iso.build_iso`) from the agent Environment's cached kernel and
initramfs with that Server's kernel command line (:func:`arges.metal.media.agent_media_args`:
where to register, and its static network if it has one), once per distinct command line and
image, under ``DATA_DIR/media/<digest>.iso``; a Server's earlier ISO is removed when its
command line changes. :meth:`AgentMedia.url` builds it ahead, so the BMC's fetch never waits
on a build (BMCs give up on slow image servers).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from arges.agent.image.debs import BuildError
from arges.agent.image.iso import build_iso
from arges.api.environment import AGENT_ENVIRONMENT, Environment
from arges.api.server import Server
from arges.assets import AssetCache
from arges.kube.client import KubeClient
from arges.kube.errors import KubeError, NotFound
from arges.kube.resources import ENVIRONMENTS, SERVERS
from arges.metal.media import MediaUnavailable, agent_media_args

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
    ) -> None:
        self.kube = kube
        self.assets = assets
        self.directory = directory
        self.base_url = base_url
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._current: dict[str, Path] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/agent/{uuid}.iso", self.serve)]

    async def prepare(self, uuid: str) -> Path:
        """The ISO of Server ``uuid``, built if needed.

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
        inputs = json.dumps([kernel.sha512, initrd.sha512, args])
        path = self.directory / f"{hashlib.sha256(inputs.encode()).hexdigest()[:32]}.iso"
        async with self._locks[path.name]:
            if not path.exists():
                try:
                    await asyncio.to_thread(build_iso, kernel.path, initrd.path, args, path)
                except BuildError as exc:
                    raise MediaUnavailable(str(exc)) from exc
                log.info(
                    "agent ISO for %s: %s (%.1f MiB), kernel arguments: %s",
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
        """Where a BMC fetches Server ``uuid``'s ISO, once it is built.

        Raises:
            MediaUnavailable: as :meth:`prepare`, and for a missing Server or an API error.
        """
        try:
            await self.prepare(uuid)
        except KubeError as exc:
            raise MediaUnavailable(f"cannot read server {uuid}: {exc}") from exc
        return f"{self.base_url()}/agent/{uuid}.iso"

    async def serve(self, request: web.Request) -> web.StreamResponse:
        uuid = request.match_info["uuid"].lower()
        try:
            path = await self.prepare(uuid)
        except NotFound as exc:
            raise web.HTTPNotFound(text=f"no server {uuid}\n") from exc
        except MediaUnavailable as exc:
            raise web.HTTPPreconditionFailed(text=f"{exc}\n") from exc
        except KubeError as exc:
            raise web.HTTPServiceUnavailable(text="Arges cannot reach its API; retry\n") from exc
        log.info("%s %s to %s", request.method, request.path, request.remote or "-")
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})
