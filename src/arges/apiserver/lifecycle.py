"""The API server's own controllers: what kube-controller-manager and apiextensions do for it.

- **CRD registration**: a CustomResourceDefinition's resource is served as soon as its write
  is acknowledged, and stops being served when it is gone (a synchronous store observer).
- **Garbage collection** (``ownerReferences``): a dependent whose owners are all gone is
  deleted; a dangling reference beside a live owner is removed; an owner deleted with
  ``propagationPolicy=Foreground`` keeps its ``foregroundDeletion`` finalizer until its
  blocking dependents (``blockOwnerDeletion: true``) are gone; one deleted with ``Orphan``
  has its dependents' references removed first.
- **Namespace lifecycle**: a terminating namespace has its content deleted, then its
  ``kubernetes`` finalizer dropped, and disappears.
- **CRD establishment**: a new CRD's names are accepted and it is marked ``Established``
  (kube-apiserver's naming and establishing controllers).
- **CRD cleanup**: a deleted CRD's custom resources are deleted (their own finalizers
  honoured) before its ``customresourcecleanup`` finalizer is dropped.
- **Event TTL**: Events are deleted an hour (``event_ttl``) after their last occurrence.

All of it is level-triggered: work is queued from changes and from a full rescan at start
and every ``resync`` seconds, so a crash at any point is repaired by the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

from arges.apiserver import crd
from arges.apiserver.admission import SYSTEM
from arges.apiserver.entries import Change, Entry
from arges.apiserver.errors import StatusError
from arges.apiserver.resources import Registry, ResourceType
from arges.apiserver.rest import Rest
from arges.apiserver.rest.deletes import FOREGROUND_FINALIZER, ORPHAN_FINALIZER
from arges.apiserver.rest.options import DeleteOptions, WriteOptions
from arges.apiserver.rest.reads import NAMESPACES
from arges.apiserver.storage import StorageError
from arges.apiserver.tables import parse_time
from arges.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CRD_RESOURCE = f"customresourcedefinitions.{crd.GROUP}"
EVENTS = "events"
MERGE = "application/merge-patch+json"
RETRY_DELAY = 0.5
"""Seconds before work that met a conflict or a storage error is tried again."""

Work = tuple[str, str, str, str]
"""(kind of work, resource, namespace, name); kinds: owner, dependent, namespace, crd, names."""


def sync_registry(registry: Registry, change: Change) -> None:
    """Serve (or stop serving) the resource of a CRD that changed."""
    if change.entry.resource != CRD_RESOURCE:
        return
    obj = change.entry.object()
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    if change.type == "DELETED":
        registry.remove(spec.get("group", ""), names.get("plural", ""))
        return
    registry.put(crd.resource_type(obj))


class Lifecycle:
    """Runs the controllers of the module docstring against one :class:`Rest`."""

    def __init__(
        self, rest: Rest, registry: Registry, *, event_ttl: float = 3600.0, resync: float = 30.0
    ) -> None:
        self.rest = rest
        self.store = rest.store
        self.registry = registry
        self.event_ttl = event_ttl
        self.resync = resync
        self._queue: dict[Work, None] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.store.observe(self._observe)

    def start(self) -> None:
        """Start the lifecycle loop as a task on the running event loop."""
        self._task = asyncio.create_task(self._run(), name="arges-lifecycle")

    async def stop(self) -> None:
        """Cancel the lifecycle loop and wait for it to end."""
        if self._task:
            await cancel_and_wait(self._task)

    def _observe(self, change: Change) -> None:
        sync_registry(self.registry, change)
        entry = change.entry
        if change.type == "DELETED":
            if entry.uid and self.store.dependents(entry.uid):
                self._add(("owner", entry.resource, entry.uid, ""))
            for uid in entry.owners:
                owner = self.store.by_uid(uid)
                if owner is not None and owner.deleting:
                    self._add(("owner", owner.resource, uid, ""))
            if entry.namespace:
                ns = self.store.get(NAMESPACES, "", entry.namespace)
                if ns is not None and ns.deleting:
                    self._add(("namespace", NAMESPACES, "", entry.namespace))
            if entry.resource != CRD_RESOURCE:
                self._crd_of(entry.resource)
            return
        self._consider(entry)

    def _crd_of(self, resource: str) -> None:
        rt = self.registry.by_resource(resource)
        if rt is not None and rt.crd and rt.terminating:
            self._add(("crd", CRD_RESOURCE, "", rt.crd))

    def _consider(self, entry: Entry) -> None:
        if entry.owners:
            self._add(("dependent", entry.resource, entry.namespace, entry.name))
        if entry.deleting:
            if FOREGROUND_FINALIZER in entry.finalizers or ORPHAN_FINALIZER in entry.finalizers:
                self._add(("owner", entry.resource, entry.uid, ""))
            if entry.resource == NAMESPACES:
                self._add(("namespace", NAMESPACES, "", entry.name))
            if entry.resource == CRD_RESOURCE:
                self._add(("crd", CRD_RESOURCE, "", entry.name))
        elif entry.resource == CRD_RESOURCE:
            self._add(("names", CRD_RESOURCE, "", entry.name))

    def _add(self, work: Work) -> None:
        self._queue[work] = None
        self._wake.set()

    def _rescan(self) -> None:
        for resource in self.store.resources():
            for entry in self.store.items(resource):
                self._consider(entry)

    async def _run(self) -> None:
        self._rescan()
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + self.resync
        while True:
            timeout = max(0.0, next_resync - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            if loop.time() >= next_resync:
                self._rescan()
                await self._expire_events()
                next_resync = loop.time() + self.resync
            batch, self._queue = list(self._queue), {}
            for work in batch:
                try:
                    await self._process(work)
                except (StatusError, StorageError) as exc:
                    log.info("%s %s/%s: %s (retrying)", work[0], work[2], work[3], exc)
                    loop.call_later(RETRY_DELAY, self._add, work)

    async def _process(self, work: Work) -> None:
        kind, resource, a, b = work
        if kind == "owner":
            await self._owner(resource, a)
        elif kind == "dependent":
            entry = self.store.get(resource, a, b)
            if entry is not None:
                await self._dependent(entry)
        elif kind == "namespace":
            await self._namespace(b)
        elif kind == "crd":
            await self._crd(b)
        elif kind == "names":
            await self._establish(b)

    def _type(self, resource: str) -> ResourceType | None:
        return self.registry.by_resource(resource)

    async def _delete(
        self, entry: Entry, policy: str = "Background", *, admission: bool = True
    ) -> None:
        rt = self._type(entry.resource)
        if rt is None or entry.deleting:
            return
        with contextlib.suppress(StatusError):
            await self.rest.delete(
                rt,
                rt.storage_version(),
                entry.namespace,
                entry.name,
                DeleteOptions(policy, user=SYSTEM, admission=admission),
            )

    async def _patch_meta(self, entry: Entry, meta: dict[str, Any]) -> None:
        rt = self._type(entry.resource)
        if rt is None:
            return
        patch = {"metadata": {**meta, "resourceVersion": str(entry.rv)}}
        await self.rest.patch(
            rt,
            rt.storage_version(),
            entry.namespace,
            entry.name,
            MERGE,
            patch,
            WriteOptions(user=SYSTEM),
        )

    async def _dependent(self, entry: Entry) -> None:
        refs = entry.object()["metadata"].get("ownerReferences") or []
        live = [r for r in refs if self.store.by_uid(r.get("uid", "")) is not None]
        if not live:
            await self._delete(entry)
        elif len(live) < len(refs):
            await self._patch_meta(entry, {"ownerReferences": live})

    async def _owner(self, resource: str, uid: str) -> None:
        owner = self.store.by_uid(uid)
        dependents = self.store.dependents(uid)
        if owner is None:
            for dep in dependents:
                await self._dependent(dep)
            return
        if not owner.deleting:
            return
        if ORPHAN_FINALIZER in owner.finalizers:
            for dep in dependents:
                refs = dep.object()["metadata"].get("ownerReferences") or []
                await self._patch_meta(
                    dep, {"ownerReferences": [r for r in refs if r.get("uid") != uid] or None}
                )
            if not self.store.dependents(uid):
                await self._drop_finalizer(owner, ORPHAN_FINALIZER)
        elif FOREGROUND_FINALIZER in owner.finalizers:
            blocking = 0
            for dep in dependents:
                ref: dict[str, Any] = next(
                    (
                        r
                        for r in dep.object()["metadata"].get("ownerReferences") or []
                        if r.get("uid") == uid
                    ),
                    {},
                )
                if ref.get("blockOwnerDeletion"):
                    blocking += 1
                    await self._delete(dep, "Foreground")
                else:
                    await self._delete(dep)
            if not blocking:
                await self._drop_finalizer(owner, FOREGROUND_FINALIZER)

    async def _drop_finalizer(self, entry: Entry, finalizer: str) -> None:
        current = self.store.get(entry.resource, entry.namespace, entry.name)
        if current is None or finalizer not in current.finalizers:
            return
        remaining = [f for f in current.finalizers if f != finalizer]
        await self._patch_meta(current, {"finalizers": remaining or None})

    async def _namespace(self, name: str) -> None:
        ns = self.store.get(NAMESPACES, "", name)
        if ns is None or not ns.deleting:
            return
        remaining = 0
        for rt in self.registry.all():
            if not rt.namespaced:
                continue
            for entry in self.store.items(rt.resource, name):
                remaining += 1
                await self._delete(entry)
        if remaining == 0:
            await self.rest.finalize_namespace(name)

    async def _crd(self, name: str) -> None:
        entry = self.store.get(CRD_RESOURCE, "", name)
        if entry is None or not entry.deleting or crd.CLEANUP_FINALIZER not in entry.finalizers:
            return
        plural, _, group = name.partition(".")
        rt = self.registry.get(group, plural)
        remaining = self.store.items(rt.resource) if rt is not None else []
        for item in remaining:
            # kube-apiserver's CRD finalizer deletes through storage: no webhook may keep a
            # deleted CRD's objects.
            await self._delete(item, admission=False)
        if not remaining:
            await self._drop_finalizer(entry, crd.CLEANUP_FINALIZER)

    async def _establish(self, name: str) -> None:
        entry = self.store.get(CRD_RESOURCE, "", name)
        rt = self._type(CRD_RESOURCE)
        if entry is None or entry.deleting or rt is None:
            return
        status = crd.accepted_status(entry.object())
        if status is None:
            return
        patch = {"metadata": {"resourceVersion": str(entry.rv)}, "status": status}
        await self.rest.patch(
            rt,
            rt.storage_version(),
            "",
            name,
            MERGE,
            patch,
            WriteOptions(user=SYSTEM),
            subresource="status",
        )

    async def _expire_events(self) -> None:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.event_ttl)
        for entry in self.store.items(EVENTS):
            created = parse_time(entry.created)
            if created is None or created > cutoff:
                continue
            obj = entry.object()
            last = max(
                (
                    t
                    for t in (
                        parse_time(str(obj.get("lastTimestamp") or "")),
                        parse_time(str(obj.get("eventTime") or "")),
                        parse_time(str((obj.get("series") or {}).get("lastObservedTime") or "")),
                        created,
                    )
                    if t is not None
                ),
            )
            if last <= cutoff:
                # Events expire by etcd TTL in kube: no admission.
                await self._delete(entry, admission=False)
