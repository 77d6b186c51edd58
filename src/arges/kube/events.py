"""Recording Events as client-go's event recorder does: repeats are counted, not repeated.

client-go's ``EventCorrelator``, in the two parts that matter to someone reading
``kubectl get events``:

- **deduplication**: an Event with the same source, involved object, type, reason and message
  as one recorded before is not created again; the recorded one gets ``count`` + 1 and a new
  ``lastTimestamp`` (one ``ConfigDelivered`` Event with count 7, not seven Events);
- **aggregation**: once ``AGGREGATE_AFTER`` Events with the same source, object, type and
  reason but different messages arrive within ``AGGREGATE_WINDOW`` seconds, the next ones are
  counted on one Event whose message is the latest one prefixed with
  ``(combined from similar events):``.

Like client-go, the memory of what was recorded is per process and bounded (an LRU of
``CACHE_SIZE`` keys); after a restart the first repeat creates a new Event. A count that
cannot be bumped (the Event expired or was deleted) is recorded anew.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from arges.kube.errors import KubeError, NotFound
from arges.kube.resources import EVENTS, Resource

log = logging.getLogger(__name__)

CACHE_SIZE = 4096
AGGREGATE_AFTER = 10
AGGREGATE_WINDOW = 600.0
MAX_MESSAGE = 1024
"""Longer messages are cut (events.k8s.io/v1 limits ``note`` to 1 kB)."""
COMBINED = "(combined from similar events): "


class Writer(Protocol):
    """What the recorder needs of a client (:class:`~arges.kube.client.KubeClient`)."""

    async def create(
        self, res: Resource, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Create ``obj``; the object as stored."""

    async def patch(
        self, res: Resource, name: str, patch: Any, namespace: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch object ``name``; the object as stored."""


@dataclass
class _Recorded:
    name: str
    namespace: str
    count: int


@dataclass
class _Similar:
    messages: set[str] = field(default_factory=set)
    since: float = 0.0


class EventRecorder:
    """Records ``core/v1`` Events for one component (see the module docstring)."""

    def __init__(self, writer: Writer, component: str) -> None:
        self.writer = writer
        self.component = component
        self._recorded: OrderedDict[tuple[str, ...], _Recorded] = OrderedDict()
        self._similar: OrderedDict[tuple[str, ...], _Similar] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[tuple[str, ...], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        """One lock per similar-Events key, held while one is recorded: a repeat waits for
        the create it would bump. Per key, not one for the recorder, since every Event of
        the component would otherwise wait for every other's round trip (9 per server in a
        fleet); a key's lock lives while a record uses it."""

    async def record(
        self, regarding: dict[str, Any], reason: str, message: str, type: str = "Normal"
    ) -> None:
        """Record (or count again) an Event about ``regarding``; failures are logged only."""
        meta = regarding.get("metadata") or {}
        involved = {
            "apiVersion": regarding.get("apiVersion", ""),
            "kind": regarding.get("kind", ""),
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            **({"namespace": meta["namespace"]} if meta.get("namespace") else {}),
        }
        message = message[:MAX_MESSAGE]
        similar_key = (
            self.component,
            *(str(involved.get(k, "")) for k in ("apiVersion", "kind", "namespace", "name")),
            str(involved["uid"]),
            type,
            reason,
        )
        lock = self._locks.get(similar_key)
        if lock is None:
            lock = self._locks[similar_key] = asyncio.Lock()
        async with lock:
            if self._flooded(similar_key, message):
                message = (COMBINED + message)[:MAX_MESSAGE]
                key = (*similar_key, COMBINED)
            else:
                key = (*similar_key, message)
            try:
                if await self._bump(key, message):
                    return
                namespace = meta.get("namespace") or "default"
                name = await self._create(involved, namespace, reason, message, type)
            except KubeError as exc:
                log.warning("could not record event %s on %s: %s", reason, involved["name"], exc)
                return
            self._remember(self._recorded, key, _Recorded(name, namespace, 1))

    def _flooded(self, key: tuple[str, ...], message: str) -> bool:
        """Whether ``message`` is past the ``AGGREGATE_AFTER`` distinct messages recorded
        under ``key`` in the current window."""
        now = time.monotonic()
        similar = self._similar.get(key)
        if similar is None or now - similar.since > AGGREGATE_WINDOW:
            similar = _Similar(since=now)
        self._remember(self._similar, key, similar)
        if message in similar.messages:
            return False
        if len(similar.messages) >= AGGREGATE_AFTER:
            return True
        similar.messages.add(message)
        return False

    async def _bump(self, key: tuple[str, ...], message: str) -> bool:
        """Count a repeat of the Event recorded under ``key`` (its message now ``message``);
        False when there is none."""
        recorded = self._recorded.get(key)
        if recorded is None:
            return False
        patch = {"count": recorded.count + 1, "lastTimestamp": _now(), "message": message}
        try:
            await self.writer.patch(EVENTS, recorded.name, patch, recorded.namespace)
        except NotFound:
            del self._recorded[key]
            return False
        recorded.count += 1
        self._recorded.move_to_end(key)
        return True

    async def _create(
        self, involved: dict[str, Any], namespace: str, reason: str, message: str, type: str
    ) -> str:
        now = _now()
        name = f"{involved['name'] or 'object'}.{uuid.uuid4().hex[:16]}"
        event = {
            "metadata": {"name": name},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.writer.create(EVENTS, event, namespace)
        return name

    @staticmethod
    def _remember(
        cache: OrderedDict[tuple[str, ...], Any], key: tuple[str, ...], value: Any
    ) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
