"""In-memory mirrors of API resources, kept current by list-then-watch (client-go's informer).

Each :class:`Informer` is the second half of client-go's informer:
:class:`arges.kube.reflector.Reflector` lists and watches its resource (resuming, listing
again after 410 Gone, retrying with capped backoff); the informer keeps the objects it hands
over, by ``namespace/name``, and says when they changed. Errors are never raised by the
mirror: it holds what it last saw.

Three consumers:

- the dashboard renders from its mirrors, so a page costs no API call (its reflectors tell
  of every object as deleted when the kind stops being served);
- in ``arges up``, the controllers' runtime takes the changes of the resources the dashboard
  mirrors from the dashboard's informers (:meth:`Informer.add_handler`, client-go's
  ``AddEventHandler`` on a shared informer) rather than from watches of its own: one copy of
  each Server and ServerBinding in the process, not two;
- the boot HTTP port reads Environments and ServerClasses, which change rarely and are read
  at every ``/ipxe`` and ``/configdata``, as controller-runtime's cached client reads
  (Sidero's iPXE and metadata servers read through one): :meth:`Informer.read` and
  :meth:`Informer.list` answer from the mirror once it has listed, and from the API before
  that, and for a name the mirror lacks (an object created a moment ago is found at once).
  Every replica runs these informers, leader or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from arges.kube.client import KubeClient
from arges.kube.connection import Connection
from arges.kube.errors import NotFound
from arges.kube.reflector import Deliver, Reflector, deliver_safely
from arges.kube.resources import Resource
from arges.tasks import cancel_and_wait

Body = dict[str, Any]
Keep = Callable[[dict[str, Body]], list[str]]
"""Called after each change with the objects; returns the keys to drop."""


def key_of(body: Body) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


class Informer:
    """The objects of one resource, across namespaces (see the module docstring).

    ``changed`` is called with the resource after each change; ``keep`` bounds what is held
    (the dashboard keeps the newest Events only); ``forget_unserved``: as
    :class:`~arges.kube.reflector.Reflector`'s. An informer that is never run reads every
    time from the API.
    """

    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        changed: Callable[[Resource], None] | None = None,
        keep: Keep | None = None,
        *,
        forget_unserved: bool = False,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.changed = changed
        self.keep = keep
        self.objects: dict[str, Body] = {}
        self.reflector = Reflector(kube, resource, self._apply, forget_unserved=forget_unserved)
        self._handlers: list[Deliver] = []

    @property
    def synced(self) -> bool:
        """Whether the mirror holds a first listing."""
        return self.reflector.synced.is_set()

    async def run(self) -> None:
        """Mirror the resource until cancelled."""
        await self.reflector.run()

    async def read(self, name: str, namespace: str | None = None) -> Body | None:
        """One object by name: the mirror's copy, else (not listed yet, or not in it) the
        API's; None when the API has none either.

        Raises:
            KubeError: the API cannot be read.
        """
        key = f"{namespace}/{name}" if namespace else name
        held = self.objects.get(key) if self.synced else None
        if held is not None:
            return held
        try:
            body: Body = await self.kube.get(self.resource, name, namespace)
        except NotFound:
            return None
        return body

    async def list(self) -> list[Body]:
        """Every object: the mirror's, once it has listed, else the API's.

        Raises:
            KubeError: the API cannot be read.
        """
        if self.synced:
            return list(self.objects.values())
        return await self.kube.list(self.resource)

    def add_handler(self, deliver: Deliver) -> Callable[[], None]:
        """Hand ``deliver`` every change from now on, as the reflector hands them (event type,
        object; ``None`` for a listing), after the mirror has taken it; returns the function
        that stops it (client-go's ``AddEventHandler``).

        The objects already held are handed over first, as a listing; :attr:`synced` says
        whether that was a whole one. The objects are shared with the mirror and every other
        handler: nobody may change them. A handler's failure is logged and stops neither the
        others nor the mirror. Not for an informer with ``keep`` (a handler would see objects
        leave that did not go).

        Raises:
            ValueError: the informer has ``keep``.
        """
        if self.keep is not None:
            raise ValueError(f"the informer of {self.resource.plural} keeps only some objects")
        for obj in list(self.objects.values()):
            deliver_safely(deliver, None, obj, self.resource)
        self._handlers.append(deliver)

        def remove() -> None:
            if deliver in self._handlers:
                self._handlers.remove(deliver)

        return remove

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
        for deliver in list(self._handlers):
            deliver_safely(deliver, event_type, obj, self.resource)
        if self.changed is not None:
            self.changed(self.resource)


class Informers:
    """Several informers on one API client of their own (a watch holds its connection for
    as long as it lasts, so they never take the connections of the client that serves
    requests), started and stopped together.

    ``component`` names the client (its Events' source and user agent); ``changed``,
    ``keep`` (by plural) and ``forget_unserved`` are given to each :class:`Informer`.
    """

    def __init__(
        self,
        connection: Connection,
        resources: list[Resource],
        *,
        component: str,
        changed: Callable[[Resource], None] | None = None,
        keep: Mapping[str, Keep] | None = None,
        forget_unserved: bool = False,
    ) -> None:
        self._kube = KubeClient(connection, component=component)
        self.by_plural = {
            resource.plural: Informer(
                self._kube,
                resource,
                changed,
                (keep or {}).get(resource.plural),
                forget_unserved=forget_unserved,
            )
            for resource in resources
        }
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start every informer (returns at once; the mirrors fill in as the lists arrive)."""
        for plural, informer in self.by_plural.items():
            self._tasks.append(asyncio.create_task(informer.run(), name=f"informer-{plural}"))

    def informer(self, resource: Resource) -> Informer:
        """The informer of ``resource`` (one of those given).

        Raises:
            KeyError: it is not one of them.
        """
        return self.by_plural[resource.plural]

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
        await self._kube.close()
