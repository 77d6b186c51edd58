"""The ServerClass controller: membership in status, qualifier errors as a condition.

Any Server or ServerBinding change enqueues every class (membership depends on all of
them) after :data:`MEMBERSHIP_DELAY`, which folds a fleet's bursts into one reconcile per
class; a class's membership lists are then written at most as often as
:func:`arges.metal.classes.write_membership_in` allows (less often the larger the fleet),
while a change of its spec is answered at once. A class whose selector or CEL expressions
cannot be used gets ``Valid=False`` with a message naming the field, and no members, instead
of silently matching nothing. The built-in
class ``any`` is created at start, again whenever it is deleted (TalosCluster pools and
cluster templates default to it), and keeps no qualifiers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from typing import Any

from arges.api.server import Server
from arges.api.serverclass import ANY_CLASS, ServerClass
from arges.controllers.parsed import parsed
from arges.controllers.runtime import Body, Cache, Controller, Key, Watch, key_of
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists
from arges.kube.resources import SERVER_BINDINGS, SERVER_CLASSES, SERVERS
from arges.metal.classes import QualifierError, compile_class, members, write_membership_in
from arges.metal.conditions import set_condition

VALID = "Valid"

MEMBERSHIP_DELAY = 1.0
"""Seconds a class's membership waits after a Server or ServerBinding change, folding every
change meanwhile into one reconcile: a class's status lists the whole fleet, and a 1,000-server
fleet changed it ten times per server (the class controller took a quarter of the plane's CPU).
Allocation does not read it (it matches candidates itself)."""


class ServerClassController(Controller):
    """See the module docstring."""

    name = "serverclasses"
    workers = 2

    def watches(self) -> list[Watch]:
        def own(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [(self.name, key_of(body))]

        def every_class(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [(self.name, k) for k in self.cache.names(SERVER_CLASSES)]

        return [
            Watch(SERVER_CLASSES, own),
            Watch(SERVERS, every_class, delay=MEMBERSHIP_DELAY),
            Watch(SERVER_BINDINGS, every_class, delay=MEMBERSHIP_DELAY),
        ]

    def __init__(self, kube: KubeClient, cache: Cache) -> None:
        super().__init__(kube, cache)
        # Per class: its (uid, generation), and what members() learnt of each server.
        self._memo: dict[Key, tuple[tuple[str, Any], dict[str, tuple[str, bool]]]] = {}
        # Per class: when its status was last written (monotonic s), for which generation.
        self._written: dict[Key, tuple[float, Any]] = {}

    async def start(self) -> None:
        """Create the built-in ``any`` ServerClass when it is missing."""
        await self._create_any()

    async def _create_any(self) -> None:
        with contextlib.suppress(AlreadyExists):
            await self.kube.create(SERVER_CLASSES, {"metadata": {"name": ANY_CLASS}, "spec": {}})

    async def reconcile(self, key: Key) -> float | None:
        body = self.cache.get(SERVER_CLASSES, key)
        if body is None:
            self._memo.pop(key, None)
            self._written.pop(key, None)
            if key == ANY_CLASS:
                await self._create_any()
            return None
        sc = ServerClass.from_json(body)
        rv = body["metadata"]["resourceVersion"]
        if key == ANY_CLASS and (body.get("spec") or {}).get("qualifiers"):
            await self.kube.patch(
                SERVER_CLASSES,
                key,
                {"metadata": {"resourceVersion": rv}, "spec": {"qualifiers": None}},
            )
            return None
        now = dt.datetime.now(dt.UTC)
        generation = body["metadata"].get("generation")
        last = self._written.get(key)
        if last is not None and last[1] == generation:
            wait = write_membership_in(last[0], time.monotonic(), len(self.cache.names(SERVERS)))
            if wait > 0:
                return wait
        try:
            compiled = compile_class(sc)
        except QualifierError as exc:
            available: list[str] = []
            in_use: list[str] = []
            conditions = set_condition(
                sc.status.conditions,
                VALID,
                "False",
                "InvalidQualifier",
                str(exc),
                now=now,
                observed_generation=generation,
            )
        else:
            servers = list(parsed(self.cache, SERVERS, Server).all().values())
            bound = set(self.cache.names(SERVER_BINDINGS))
            version = (body["metadata"].get("uid", ""), generation)
            if self._memo.get(key, (None, {}))[0] != version:
                self._memo[key] = (version, {})
            available, in_use = members(compiled, servers, bound, self._memo[key][1])
            conditions = set_condition(
                sc.status.conditions,
                VALID,
                "True",
                "QualifiersCompiled",
                "selector and qualifiers are usable",
                now=now,
                observed_generation=generation,
            )
        status: dict[str, Any] = {
            "serversAvailable": available,
            "serversInUse": in_use,
            "conditions": [c.to_json() for c in conditions],
        }
        current = body.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return None
        await self.kube.patch(
            SERVER_CLASSES,
            key,
            {"metadata": {"resourceVersion": rv}, "status": status},
            subresource="status",
        )
        self._written[key] = (time.monotonic(), generation)
        return None
