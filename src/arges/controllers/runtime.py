"""The controller runtime: reflectors watch, a cache mirrors, work queues reconcile.

One :class:`~arges.kube.reflector.Reflector` per watched resource lists it, then watches it
(resuming, relisting on 410 Gone, bookmarks, timeouts), through Arges' own API client. Each
event updates an in-memory :class:`Cache` (the informer pattern) and is mapped to the keys
of the objects whose state it affects, e.g. a ServerBinding change enqueues its Server and
every ServerClass. Each :class:`Controller` then reconciles keys from its own
:class:`WorkQueue`:

- level-triggered: ``reconcile(key)`` reads the current state and makes the world match it,
  so it is idempotent and a restart at any point converges (the initial listing enqueues
  every object);
- serialised per key, parallel across keys (``workers`` per controller);
- a failure is retried with capped exponential backoff (never a hot loop); a reconcile may
  ask to be called again after a delay.

Everything runs on the caller's event loop. Workers start once the first listing of each
watched resource is in the cache; a stop cancels the workers, then the watches.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.connection import Connection
from arges.kube.informer import Informer, Informers
from arges.kube.reflector import Reflector
from arges.kube.resources import Resource
from arges.metrics import Metrics
from arges.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Body = dict[str, Any]
Key = str
"""A reconcile key: ``name`` for cluster-scoped objects, ``namespace/name`` otherwise."""


def key_of(body: Body) -> Key:
    """The reconcile :data:`Key` of an object (``metadata.name`` is required: KeyError)."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


class RetryLater(ArgesError):
    """A reconcile that met an expected failure (already recorded on the object): retry with
    backoff, without a traceback in the log."""


class Cache:
    """The latest observed state of every watched object, by resource and key."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[Key, Body]] = {}

    def apply(self, resource: Resource, event_type: str | None, body: Body) -> None:
        """Record a watch event: a ``DELETED`` object leaves the cache, any other replaces its
        key's entry."""
        objects = self._objects.setdefault(resource.plural, {})
        if event_type == "DELETED":
            objects.pop(key_of(body), None)
        else:
            objects[key_of(body)] = body

    def get(self, resource: Resource, key: Key) -> Body | None:
        """The last observed object of ``resource`` at ``key``, or None."""
        return self._objects.get(resource.plural, {}).get(key)

    def objects(self, resource: Resource) -> list[Body]:
        """Every observed object of ``resource`` (a new list; the bodies are the cache's own)."""
        return list(self._objects.get(resource.plural, {}).values())

    def names(self, resource: Resource) -> list[Key]:
        """The keys of every observed object of ``resource``."""
        return list(self._objects.get(resource.plural, {}))


class WorkQueue:
    """Keys to reconcile, each at most once at a time, with delays and per-key backoff."""

    def __init__(self, *, base_delay: float = 0.5, max_delay: float = 300.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._ready: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._backing_off: set[Key] = set()

    def add(self, key: Key, delay: float = 0.0) -> None:
        """Schedule ``key`` now or after ``delay`` seconds (the earliest request wins).

        A key backing off after failures waits for its backoff even when an event asks for
        it sooner: the retry reads the latest state anyway, and a failing BMC or API is not
        hammered by every change that happens meanwhile.
        """
        if key in self._backing_off:
            return
        if delay > 0:
            loop = asyncio.get_running_loop()
            timer = self._timers.get(key)
            when = loop.time() + delay
            if timer is not None and timer.when() <= when:
                return
            if timer is not None:
                timer.cancel()
            self._timers[key] = loop.call_at(when, self._fire, key)
            return
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self._backing_off.discard(key)
        self.add(key)

    async def get(self) -> Key:
        """Wait for the next key due for a reconcile and mark it active: it is not handed out
        again until :meth:`done`."""
        key = await self._ready.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key, *, failed: bool, requeue_after: float | None) -> None:
        """Finish ``key``: back off after a failure, or honour a requested delay."""
        self._active.discard(key)
        if failed:
            count = self._failures.get(key, 0)
            self._failures[key] = count + 1
            self._again.discard(key)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            self.add(key, min(self.max_delay, self.base_delay * 2**count))
            self._backing_off.add(key)
            return
        self._failures.pop(key, None)
        if requeue_after is not None:
            self.add(key, requeue_after)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def depth(self) -> int:
        """How many keys wait to be reconciled now (delayed retries not counted)."""
        return len(self._queued)

    def failures(self, key: Key) -> int:
        """How many times in a row ``key`` has failed (0 after a success)."""
        return self._failures.get(key, 0)

    def close(self) -> None:
        """Cancel the delayed additions (retries, requeues) still pending."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class Gate(Protocol):
    """What a worker passes before each reconcile (the plane-wide pause,
    :class:`arges.controllers.pause.PlaneGate`): ``enter`` waits while it is closed."""

    async def enter(self) -> None:
        """Wait until reconciles may run."""

    def leave(self) -> None:
        """Say the reconcile that entered has ended."""


@dataclass(frozen=True)
class Watch:
    """A resource to watch, and for each event the keys of the controllers it affects."""

    resource: Resource
    route: Callable[[str | None, Body], Iterable[tuple[str, Key]]]
    """(event type, object) -> (controller name, key) pairs to enqueue."""
    delay: float = 0.0
    """Seconds the keys wait before their reconcile: every event of the watch meanwhile is
    folded into that one (for a key that summarises many objects, which a fleet changes
    hundreds of times a second)."""
    label_selector: str | None = None
    """Only the objects it selects are watched and cached (every watch of a resource must
    name the same one: the cache holds one view of each resource)."""


class Controller:
    """A reconciler of one kind of key; subclasses implement :meth:`reconcile`."""

    name = "controller"
    workers = 4
    gate: Gate | None = None
    """Passed before every reconcile, when set."""

    def __init__(self, kube: KubeClient, cache: Cache) -> None:
        self.kube = kube
        self.cache = cache
        self.queue = WorkQueue()

    def watches(self) -> list[Watch]:
        """The resources this controller needs watched, and how events map to keys."""
        return []

    async def start(self) -> None:
        """Called once before the first reconcile (e.g. to create built-in objects)."""

    async def reconcile(self, key: Key) -> float | None:
        """Make the world match the desired state of ``key``; return a delay to be called
        again after, or None. Raising retries with backoff."""
        raise NotImplementedError

    async def run_worker(self, metrics: Metrics) -> None:
        """Reconcile keys from the queue for ever, recording each in ``metrics``."""
        while True:
            key = await self.queue.get()
            gate = self.gate
            if gate is not None:
                await gate.enter()
            started = time.monotonic()
            failed = False
            again: float | None = None
            try:
                again = await self.reconcile(key)
            except ArgesError as exc:
                # The controllers' boundary: an Arges error carries its own explanation (an
                # API refusal, an unreachable BMC or Talos node, RetryLater); anything
                # else is a bug and keeps its traceback.
                failed = True
                log.info("%s %s: %s (retrying)", self.name, key, exc)
            except Exception:
                failed = True
                log.exception("%s %s failed (retrying)", self.name, key)
            finally:
                self.queue.done(key, failed=failed, requeue_after=again)
                metrics.reconciled(self.name, time.monotonic() - started, failed=failed)
                if gate is not None:
                    gate.leave()


CACHE_SYNC_SECONDS = 30.0
"""How long workers wait for a watched resource's initial listing (see ``Manager``)."""


class Manager:
    """Runs controllers: one :class:`~arges.kube.reflector.Reflector` per watched resource
    feeds the cache and the work queues, and each controller's workers reconcile, all on the
    caller's event loop.

    The watches have a client of their own (each holds a connection for as long as it lasts),
    so they never take the connections the controllers' requests need. A resource that one
    of the ``shared`` informers already mirrors whole, at the same version, is not watched
    again: the manager takes that informer's changes
    (:meth:`~arges.kube.informer.Informer.add_handler`), and the cache holds the informer's
    objects rather than copies.
    """

    def __init__(
        self,
        connection: Connection,
        controllers: list[Controller],
        cache: Cache,
        metrics: Metrics | None = None,
        shared: Informers | None = None,
    ) -> None:
        self.connection = connection
        self.controllers = {c.name: c for c in controllers}
        self.cache = cache
        self.metrics = metrics if metrics is not None else Metrics()
        self.shared = shared
        self.metrics.queues = lambda: {n: c.queue.depth() for n, c in self.controllers.items()}

    def routes(self) -> dict[Resource, list[Watch]]:
        """Each watched resource with the watches of every controller on it.

        Raises:
            ValueError: two watches of one resource select different objects.
        """
        routes: dict[Resource, list[Watch]] = {}
        for controller in self.controllers.values():
            for watch in controller.watches():
                routes.setdefault(watch.resource, []).append(watch)
        for resource, watches in routes.items():
            if len({w.label_selector for w in watches}) > 1:
                raise ValueError(f"the watches of {resource.plural} select different objects")
        return routes

    def _shared_informer(self, resource: Resource, watches: list[Watch]) -> Informer | None:
        """The shared informer that mirrors what ``watches`` need of ``resource``, if any."""
        if self.shared is None or watches[0].label_selector:
            return None
        informer = self.shared.by_plural.get(resource.plural)
        if informer is None or informer.resource != resource or informer.keep is not None:
            return None
        return informer

    async def _wait_for_cache(
        self, listings: list[tuple[Resource, asyncio.Event]], stop: asyncio.Event
    ) -> None:
        """Return once the first listing of each watched resource of a fixed version is in the
        cache (controller-runtime's ``WaitForCacheSync``), or after ``CACHE_SYNC_SECONDS`` per
        resource, or at ``stop``.

        Workers start only then. Before, a restarted plane's power controller reconciled a
        Server before its ServerBinding was in the cache, took the bound, installed server
        for an unbound one to wipe, and power-cycled it. A resource read at whichever version
        the API server prefers (Cluster API's, installed after Arges perhaps) is not waited
        for.
        """
        stopped = asyncio.ensure_future(stop.wait())
        try:
            for resource, listed in listings:
                if not resource.version:
                    continue
                synced = asyncio.ensure_future(listed.wait())
                done, _ = await asyncio.wait(
                    [synced, stopped], timeout=CACHE_SYNC_SECONDS, return_when=FIRST_COMPLETED
                )
                synced.cancel()
                if stopped in done:
                    return
                if not done:
                    log.warning(
                        "the cache of %s is not filled after %.0f s; starting",
                        resource.plural,
                        CACHE_SYNC_SECONDS,
                    )
        finally:
            stopped.cancel()

    def _dispatch(
        self, resource: Resource, watches: list[Watch], event_type: str | None, body: Body
    ) -> None:
        self.cache.apply(resource, event_type, body)
        for watch in watches:
            for controller_name, key in watch.route(event_type, body):
                self.controllers[controller_name].queue.add(key, watch.delay)

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set; ``ready`` is set once every controller has started.

        Raises:
            RuntimeError: a watch ended on its own (a bug: the log says which).
        """
        tasks: list[asyncio.Task[None]] = []
        async with KubeClient(self.connection, component="arges-watch") as kube:
            reflectors: list[Reflector] = []
            listings: list[tuple[Resource, asyncio.Event]] = []
            removals: list[Callable[[], None]] = []
            for resource, watches in self.routes().items():
                deliver = functools.partial(self._dispatch, resource, watches)
                informer = self._shared_informer(resource, watches)
                if informer is not None:
                    removals.append(informer.add_handler(deliver))
                    listings.append((resource, informer.reflector.synced))
                    continue
                reflector = Reflector(
                    kube, resource, deliver, label_selector=watches[0].label_selector
                )
                reflectors.append(reflector)
                listings.append((resource, reflector.synced))
            watching = [
                asyncio.create_task(r.run(), name=f"watch-{r.resource.plural}") for r in reflectors
            ]
            try:
                await self._wait_for_cache(listings, stop)
                for controller in self.controllers.values():
                    await controller.start()
                    for i in range(controller.workers):
                        tasks.append(
                            asyncio.create_task(
                                controller.run_worker(self.metrics), name=f"{controller.name}-{i}"
                            )
                        )
                if ready is not None:
                    ready.set()
                stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait([stopped, *watching], return_when=FIRST_COMPLETED)
                stopped.cancel()
                if stopped not in done:
                    ended = [t for t in watching if t.done()]
                    for task in ended:
                        if not task.cancelled() and task.exception() is not None:
                            log.error("%s ended", task.get_name(), exc_info=task.exception())
                    raise RuntimeError("the controllers' watches stopped unexpectedly")
            finally:
                # The workers end before the watches: a stop must not leave them reconciling
                # on a cache that no longer follows the API.
                try:
                    await cancel_and_wait(*tasks)
                finally:
                    for controller in self.controllers.values():
                        controller.queue.close()
                    for remove in removals:
                        remove()
                    await _cancel_quietly(watching)


async def _cancel_quietly(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them; what they ended with was reported already."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
