"""In-memory mirrors of API resources, kept current by list-then-watch (client-go's informer).

The dashboard renders from these mirrors, so a page costs no API call, and every watch event
wakes the browsers' live streams. Each :class:`Informer` is the second half of client-go's
informer: :class:`arges.kube.reflector.Reflector` lists and watches its resource (resuming,
listing again after 410 Gone, retrying with capped backoff, and, for the dashboard, telling
of every object as deleted when the kind stops being served); the informer keeps the
objects it hands over, by ``namespace/name``, and says when they changed. Errors are never
raised: the dashboard shows what it last saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from arges.kube.client import KubeClient
from arges.kube.connection import Connection
from arges.kube.reflector import Reflector
from arges.kube.resources import Resource
from arges.tasks import cancel_and_wait

Body = dict[str, Any]


def key_of(body: Body) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


class Informer:
    """The objects of one resource, across namespaces (see the module docstring).

    ``changed`` is called with the resource after each change; ``keep`` bounds what is held:
    called after each change with the objects, it returns the keys to drop (the dashboard
    keeps the newest Events only).
    """

    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        changed: Callable[[Resource], None],
        keep: Callable[[dict[str, Body]], list[str]] | None = None,
    ) -> None:
        self.resource = resource
        self.changed = changed
        self.keep = keep
        self.objects: dict[str, Body] = {}
        self.reflector = Reflector(kube, resource, self._apply, forget_unserved=True)

    async def run(self) -> None:
        """Mirror the resource until cancelled."""
        await self.reflector.run()

    def _apply(self, event_type: str | None, obj: Body) -> None:
        if event_type == "DELETED":
            self.objects.pop(key_of(obj), None)
        else:
            self.objects[key_of(obj)] = obj
        if self.keep is not None:
            for key in self.keep(self.objects):
                dropped = self.objects.pop(key, None)
                if dropped is not None:
                    self.reflector.forget(dropped)
        self.changed(self.resource)


class Informers:
    """Several informers on one API client of their own (a watch holds its connection for
    as long as it lasts), started and stopped together."""

    def __init__(
        self, connection: Connection, resources: list[Resource], changed: Callable[[Resource], None]
    ) -> None:
        self.connection = connection
        self.resources = resources
        self.changed = changed
        self.by_plural: dict[str, Informer] = {}
        self._kube: KubeClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, keep: dict[str, Callable[[dict[str, Body]], list[str]]]) -> None:
        """Start one informer per resource (``keep`` by plural, see :class:`Informer`)."""
        self._kube = KubeClient(self.connection, component="arges-dashboard")
        for resource in self.resources:
            informer = Informer(self._kube, resource, self.changed, keep.get(resource.plural))
            self.by_plural[resource.plural] = informer
            self._tasks.append(
                asyncio.create_task(informer.run(), name=f"dashboard-{resource.plural}")
            )

    def objects(self, resource: Resource) -> list[Body]:
        """The mirrored objects of ``resource``."""
        informer = self.by_plural.get(resource.plural)
        return list(informer.objects.values()) if informer is not None else []

    def get(self, resource: Resource, key: str) -> Body | None:
        """One mirrored object by ``namespace/name`` (or name)."""
        informer = self.by_plural.get(resource.plural)
        return informer.objects.get(key) if informer is not None else None

    async def stop(self) -> None:
        """Cancel the informers and close their client."""
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        if self._kube is not None:
            await self._kube.close()
            self._kube = None
