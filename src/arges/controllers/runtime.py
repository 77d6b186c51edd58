"""The controller runtime: kopf watches, a cache mirrors, work queues reconcile.

kopf does what is hard to get right about watching Kubernetes (list then watch, resuming,
relisting on 410 Gone, bookmarks, timeouts, credentials). Each watch event updates an
in-memory :class:`Cache` (the informer pattern) and is mapped to the keys of the objects
whose state it affects, e.g. a ServerBinding change enqueues its Server and every
ServerClass. Each :class:`Controller` then reconciles keys from its own :class:`WorkQueue`:

- level-triggered: ``reconcile(key)`` reads the current state and makes the world match it,
  so it is idempotent and a restart at any point converges (the initial listing enqueues
  every object);
- serialised per key, parallel across keys (``workers`` per controller);
- a failure is retried with capped exponential backoff (never a hot loop); a reconcile may
  ask to be called again after a delay.

kopf's own bookkeeping is switched off: no annotations, finalizers or events of its own, and
no change detection (only event handlers are registered). kopf runs on a thread of its own
and hands events to the main loop in batches (one wake of the loop per batch). Workers start
once the first listing of each watched resource is in the cache; a stop never waits without
bound on kopf.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import kopf

from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.connection import Connection
from arges.kube.errors import KubeError
from arges.kube.resources import Resource
from arges.metrics import Metrics
from arges.tasks import cancel_and_wait

log = logging.getLogger(__name__)

KOPF_STOP_SECONDS = 15.0
"""How long a stop waits for kopf's own shutdown before cancelling what it runs."""

Body = dict[str, Any]
Key = str
"""A reconcile key: ``name`` for cluster-scoped objects, ``namespace/name`` otherwise."""


def key_of(body: Body) -> Key:
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
        objects = self._objects.setdefault(resource.plural, {})
        if event_type == "DELETED":
            objects.pop(key_of(body), None)
        else:
            objects[key_of(body)] = body

    def get(self, resource: Resource, key: Key) -> Body | None:
        return self._objects.get(resource.plural, {}).get(key)

    def objects(self, resource: Resource) -> list[Body]:
        return list(self._objects.get(resource.plural, {}).values())

    def names(self, resource: Resource) -> list[Key]:
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
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class Gate(Protocol):
    """What a worker passes before each reconcile (the plane-wide pause,
    :class:`arges.controllers.pause.PlaneGate`): ``enter`` waits while it is closed."""

    async def enter(self) -> None: ...

    def leave(self) -> None: ...


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


def kopf_connection(connection: Connection) -> kopf.ConnectionInfo:
    """The same credentials for kopf's watches as for Arges' own client."""
    return kopf.ConnectionInfo(
        server=connection.server,
        ca_data=base64.b64encode(connection.ca_data).decode() if connection.ca_data else None,
        insecure=connection.insecure,
        token=connection.bearer(),
        certificate_data=(
            base64.b64encode(connection.cert_data).decode() if connection.cert_data else None
        ),
        private_key_data=(
            base64.b64encode(connection.key_data).decode() if connection.key_data else None
        ),
        default_namespace=connection.namespace,
    )


CACHE_SYNC_SECONDS = 30.0
"""How long workers wait for a watched resource's initial listing (see ``Manager``)."""


class Manager:
    """Runs controllers: kopf in a thread of its own, the cache and workers in the caller's loop.

    kopf treats every task created in its event loop after it started as its own, and at
    exit waits for and cancels them all; embedded beside the API server that would reach
    into unrelated request handlers. So kopf runs its own loop on a thread, and its event
    handler hands each event to the main loop (``call_soon_threadsafe``), where the cache
    and the queues live.
    """

    def __init__(
        self,
        connection: Connection,
        controllers: list[Controller],
        cache: Cache,
        metrics: Metrics | None = None,
    ) -> None:
        self.connection = connection
        self.controllers = {c.name: c for c in controllers}
        self.cache = cache
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.queues = lambda: {n: c.queue.depth() for n, c in self.controllers.items()}
        self._watched: list[Resource] = []
        self._inbox: list[tuple[Resource, list[Watch], str | None, Body]] = []
        self._inbox_lock = threading.Lock()

    def _registry(self, loop: asyncio.AbstractEventLoop) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()

        # Async: kopf runs a sync handler in an executor and shields it from cancellation.
        @kopf.on.login(registry=registry)
        async def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf_connection(self.connection)

        routes: dict[Resource, list[Watch]] = {}
        for controller in self.controllers.values():
            for watch in controller.watches():
                routes.setdefault(watch.resource, []).append(watch)
        self._watched = list(routes)
        for resource, watches in routes.items():
            forward = functools.partial(self._forward, loop, resource, watches)
            register_watch(registry, resource, forward)
        return registry

    async def _wait_for_cache(self, stop: asyncio.Event) -> None:
        """Return once kopf's initial listing has brought every object that existed a moment
        ago into the cache, for each watched resource of a fixed version (controller-runtime's
        ``WaitForCacheSync``), or after ``CACHE_SYNC_SECONDS`` per resource, or at ``stop``.

        Workers start only then. Before, a restarted plane's power controller reconciled a
        Server before its ServerBinding was in the cache, took the bound, installed server
        for an unbound one to wipe, and power-cycled it. A resource whose version kopf
        resolves later (Cluster API's, installed after Arges perhaps) is not waited for; an
        API error is logged and that resource not waited for.
        """
        async with KubeClient(self.connection, component="arges-cache-sync") as kube:
            for resource in self._watched:
                if not resource.version:
                    continue
                try:
                    wanted = {key_of(b) for b in await kube.list(resource)}
                except KubeError as exc:
                    log.warning("not waiting for the cache of %s: %s", resource.plural, exc)
                    continue
                deadline = time.monotonic() + CACHE_SYNC_SECONDS
                while not wanted <= set(self.cache.names(resource)) and not stop.is_set():
                    if time.monotonic() > deadline:
                        log.warning(
                            "the cache of %s lacks %d of %d objects after %.0f s; starting",
                            resource.plural,
                            len(wanted - set(self.cache.names(resource))),
                            len(wanted),
                            CACHE_SYNC_SECONDS,
                        )
                        break
                    await asyncio.sleep(0.05)

    def _forward(
        self,
        loop: asyncio.AbstractEventLoop,
        resource: Resource,
        watches: list[Watch],
        event_type: str | None,
        body: Body,
    ) -> None:
        # On kopf's thread. Events are handed over in batches: the main loop is woken (a
        # write to its self-pipe, then a wait for the GIL) once per batch, not per event.
        with self._inbox_lock:
            self._inbox.append((resource, watches, event_type, body))
            wake = len(self._inbox) == 1
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to tell
                loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._inbox_lock:
            batch, self._inbox = self._inbox, []
        for resource, watches, event_type, body in batch:
            # One event's failure must not lose the rest of its batch (each was a callback
            # of its own before, which the loop's exception handler logged alone).
            try:
                self._dispatch(resource, watches, event_type, body)
            except Exception:
                log.exception("routing a %s event failed", resource.plural)

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
            RuntimeError: kopf stopped on its own (its log says why).
        """
        # kopf reports every handled event at INFO; Arges' own logs say what matters.
        logging.getLogger("kopf").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not ended.done():
                ended.set_result(None)

        kopf_thread = _KopfThread(self._registry(loop), lambda: loop.call_soon_threadsafe(on_exit))
        kopf_thread.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._wait_for_cache(stop)
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
            await asyncio.wait([ended, stopped], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if ended.done():
                raise RuntimeError("the controllers' watches stopped unexpectedly")
        finally:
            kopf_thread.stop()
            # The workers end before kopf is waited for: they need nothing from it, and a
            # stop cut short while kopf is waited for must not leave them reconciling.
            try:
                await cancel_and_wait(*tasks)
            finally:
                for controller in self.controllers.values():
                    controller.queue.close()
            await _wait_for_kopf(kopf_thread, ended)


async def _wait_for_kopf(kopf_thread: _KopfThread, ended: asyncio.Future[None]) -> None:
    """Wait for a kopf asked to stop; cancel its tasks if it has not ended after
    ``KOPF_STOP_SECONDS``; give up on it (a daemon thread) after as long again. Never waits
    without bound: kopf's watchers wait, shielded from cancellation, for their per-object
    workers to drain (kopf's ``queueing.watcher``), and a stop of the plane must not hang
    on that."""
    await asyncio.wait([ended], timeout=KOPF_STOP_SECONDS)
    if ended.done():
        return
    log.warning("kopf did not stop in %.0f s; cancelling its tasks", KOPF_STOP_SECONDS)
    kopf_thread.cancel()
    await asyncio.wait([ended], timeout=KOPF_STOP_SECONDS)
    if not ended.done():
        log.error("kopf did not stop once its tasks were cancelled; leaving its thread behind")


class _SignalsHandledElsewhere(logging.Filter):
    """kopf warns that it ignores OS signals off the main thread; the process handles them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "OS signals are ignored" not in record.getMessage()


logging.getLogger("kopf._core.reactor.running").addFilter(_SignalsHandledElsewhere())


class _OptionalResources(logging.Filter):
    """kopf warns, at every change of the cluster's CRDs, about watched resources whose CRDs
    are absent; Cluster API's are optional (the provider waits for them), so that is no news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Unresolved resources cannot be served" not in record.getMessage()


logging.getLogger("kopf._core.reactor.observation").addFilter(_OptionalResources())


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf's change detection switched off: Arges registers only event handlers, which get
    no diff. kopf's default storage builds an "essence" of every event's object for one, a
    deep copy of the whole object (a Server's inventory too) that is then thrown away: a
    quarter of kopf's thread's time in a 300-server fleet. kopf documents this setting
    (``settings.persistence.diffbase_storage``) for custom storages."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class _KopfThread(threading.Thread):
    """kopf's operator on its own event loop."""

    def __init__(self, registry: kopf.OperatorRegistry, on_exit: Callable[[], object]) -> None:
        super().__init__(name="arges-kopf", daemon=True)
        self.registry = registry
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_flag: asyncio.Event | None = None
        self._started = threading.Event()

    def run(self) -> None:
        try:
            with contextlib.suppress(asyncio.CancelledError):
                asyncio.run(self._main())
        finally:
            # The caller's loop may be closed already if it gave up on this thread.
            with contextlib.suppress(RuntimeError):
                self._on_exit()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_flag = asyncio.Event()
        self._started.set()
        settings = kopf.OperatorSettings()
        settings.peering.standalone = True
        settings.posting.enabled = False
        settings.persistence.diffbase_storage = _NoDiffBase()
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 30
        try:
            await kopf.operator(
                registry=self.registry,
                settings=settings,
                clusterwide=True,
                standalone=True,
                stop_flag=self._stop_flag,
            )
        except Exception:
            log.exception("kopf stopped")

    def stop(self) -> None:
        """Ask kopf to stop (its stop flag)."""
        self._started.wait(10)
        if self._loop is not None and self._stop_flag is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop_flag.set)

    def cancel(self) -> None:
        """Cancel every task on kopf's loop, for a kopf that did not heed :meth:`stop`."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def cancel_all() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(cancel_all)


def register_watch(
    registry: kopf.OperatorRegistry,
    resource: Resource,
    forward: Callable[[str | None, Body], object],
) -> None:
    """Register one kopf event handler for ``resource`` that forwards every event."""

    async def on_event(*, event: kopf.RawEvent, **_: Any) -> None:
        forward(event.get("type"), dict(event["object"]))

    # An empty version watches whichever version the API server prefers (kopf resolves it
    # when the resource appears: Cluster API's kinds may be installed after Arges starts).
    kopf.on.event(
        group=resource.group,
        version=resource.version or None,
        plural=resource.plural,
        registry=registry,
    )(on_event)
