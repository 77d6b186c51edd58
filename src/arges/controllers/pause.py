"""The plane-wide pause: every controller of this process, and its boot services, follow the
API's ManagementPlane object (:mod:`arges.api.plane`).

:class:`PlaneGate` reads the object every ``interval`` seconds (creating it, unpaused, when
it is missing). While ``spec.paused`` is set:

- no reconcile starts: each controller's worker waits in :meth:`PlaneGate.enter` with its key
  (the runtime calls it), and resumes where it waited once the pause is lifted (reconciles are
  level-triggered: they read the state as it is then);
- :meth:`PlaneGate.refusal` says why, and the boot HTTP service answers 503 with it.

Once no reconcile is under way any more, the process acknowledges: its entry in
``status.instances`` says ``paused`` at the generation it saw. That entry is also renewed
every ``heartbeat`` seconds, so whoever waits for the acknowledgements can tell a live
process from one that is gone (entries older than ten minutes are dropped by whichever
process writes next). A stop removes the process's entry.

Reads go through a plain GET rather than a watch, so that the pause holds on processes that
run no controllers (boot services only) and before the controllers' watches have started.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
from typing import Any

from arges.api.plane import PLANE_NAME, ManagementPlane, PlaneInstance
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, KubeError, NotFound
from arges.kube.resources import MANAGEMENT_PLANES

log = logging.getLogger(__name__)

STALE = dt.timedelta(minutes=10)
"""Instance entries not renewed for this long are dropped (their process is gone)."""


def new_identity() -> str:
    """``host/pid/random``: unique per process, readable by people."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


class PlaneGate:
    """See the module docstring."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        interval: float = 1.0,
        heartbeat: float = 30.0,
        identity: str | None = None,
    ) -> None:
        self.kube = kube
        self.interval = interval
        self.heartbeat = heartbeat
        self.identity = identity or new_identity()
        self.plane = ManagementPlane()
        self.generation = 0
        self._running = asyncio.Event()
        self._running.set()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._reported: tuple[bool, int] | None = None
        self._last_report = 0.0

    @property
    def paused(self) -> bool:
        """Whether nothing may act."""
        return self.plane.spec.paused

    def refusal(self) -> str | None:
        """Why boot requests are refused now, or None when they are served."""
        spec = self.plane.spec
        if spec.paused:
            return f"Arges is paused ({spec.reason or 'spec.paused'})"
        return None

    async def enter(self) -> None:
        """Wait while paused, then count one reconcile under way."""
        while self.paused:
            self._running.clear()
            await self._running.wait()
        self._active += 1
        self._idle.clear()

    def leave(self) -> None:
        """That reconcile is over."""
        self._active -= 1
        if self._active == 0:
            self._idle.set()

    async def load(self) -> None:
        """Read (or create) the ManagementPlane object and follow it.

        Raises:
            KubeError: the API cannot be used.
        """
        try:
            body = await self.kube.get(MANAGEMENT_PLANES, PLANE_NAME)
        except NotFound:
            try:
                body = await self.kube.create(MANAGEMENT_PLANES, {"metadata": {"name": PLANE_NAME}})
            except AlreadyExists:
                body = await self.kube.get(MANAGEMENT_PLANES, PLANE_NAME)
        self._follow(body)

    def _follow(self, body: dict[str, Any]) -> None:
        was_paused = self.paused
        self.plane = ManagementPlane.from_json(body)
        self.generation = int(body["metadata"].get("generation") or 0)
        if was_paused != self.paused:
            log.info("plane %s", f"paused: {self.refusal()}" if self.paused else "resumed")
        if not self.paused:
            self._running.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the object and report this process until ``stop`` is set; then remove its
        entry. API failures are logged and retried at the next interval."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await self.load()
                state = (self.paused, self.generation)
                due = loop.time() - self._last_report >= self.heartbeat
                if (state != self._reported or due) and (not self.paused or self._idle.is_set()):
                    await self._report(state)
                    self._reported = state
                    self._last_report = loop.time()
            except KubeError as exc:
                log.info("plane state: %s (retrying)", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await stop.wait()
        with contextlib.suppress(KubeError):
            await self._report(None)

    async def _report(self, state: tuple[bool, int] | None) -> None:
        """Write this process's entry, whether it is paused at the generation it saw (None:
        remove it), dropping stale ones."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            current = ManagementPlane.from_json(obj).status.instances or []
            kept = [i for i in current if i.id != self.identity and now - i.heartbeat < STALE]
            if state is not None:
                kept.append(
                    PlaneInstance(
                        id=self.identity,
                        paused=state[0],
                        observed_generation=state[1],
                        heartbeat=now,
                    )
                )
            return {"instances": [i.to_json() for i in kept]}

        await self.kube.update_status(MANAGEMENT_PLANES, PLANE_NAME, change)
