"""List then watch one resource, handing every change to a callback: client-go's Reflector.

The informer pattern's first half (controller-runtime's informers rest on client-go's
``Reflector``; https://pkg.go.dev/k8s.io/client-go/tools/cache#Reflector):

1. LIST the resource across namespaces; each object is handed over with the event type
   ``None`` (the initial listing), and each object known from before that the listing no
   longer holds as ``DELETED`` (a relist after a gap loses no deletion). :attr:`synced` is
   set once the first listing is handed over;
2. WATCH from the listing's ``resourceVersion`` with bookmarks, handing over ``ADDED``,
   ``MODIFIED`` and ``DELETED`` events in order, and keeping the latest ``resourceVersion``
   seen (bookmarks move it too);
3. when the server ends the watch (its ``timeoutSeconds``), watch again from there; when the
   version is too old (410 Gone, as an ``ERROR`` event or an answer), list again; when the
   API cannot be reached, or ends a watch at once with nothing in it, retry after a capped
   exponential backoff, from where it was; when the resource is no longer served (404, its
   CRD deleted), look for it again. What it knew stays known, as in client-go, until a
   listing says otherwise: a kube-apiserver that has just started answers 404 for custom
   resources until it has read their definitions, and the controllers must not take that
   for the deletion of every object. A reflector made with ``forget_unserved`` (the
   dashboard's) hands every object known over as ``DELETED`` instead.

Objects are handed over without ``metadata.managedFields`` (controller-runtime's
``cache.TransformStripManagedFields``): no consumer reads them, they are half of a mirrored
Server's or ServerBinding's memory, and an update sent without them keeps the live ones
(kube-apiserver's rule, and the embedded API server's).

A resource given without a version (Cluster API's kinds, which may be installed after Arges
starts) is read at the version the API server prefers (discovery), looked for again every
``absent_poll`` seconds while it is not served, and its version looked up again each time a
watch ends: an upgrade that changes the preferred version is then listed afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from arges.kube.client import KubeClient
from arges.kube.errors import KubeError, NotFound, Unavailable
from arges.kube.resources import Resource

log = logging.getLogger(__name__)

Deliver = Callable[[str | None, dict[str, Any]], None]
"""Called with (event type, object): ``None`` for the listing, else the watch event's type."""

GONE = 410
SHORT_WATCH = 1.0
"""Seconds under which a watch that ended with no event counts as a failure (backed off)."""


class Expired(KubeError):
    """The watch's resourceVersion is too old (410 Gone): only a new listing goes on."""


class Reflector:
    """Keeps ``deliver`` in step with ``resource`` (see the module docstring), or with the
    objects of it ``label_selector`` selects.

    ``timeout_seconds``: the server-side length of each watch; ``absent_poll``: seconds between
    looks for a resource the API server does not serve; ``max_backoff``: the longest wait
    between retries after failures (seconds); ``forget_unserved``: hand the objects known over
    as ``DELETED`` when the resource stops being served.
    """

    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        deliver: Deliver,
        *,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        absent_poll: float = 2.0,
        max_backoff: float = 30.0,
        forget_unserved: bool = False,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.deliver = deliver
        self.label_selector = label_selector
        self.timeout_seconds = timeout_seconds
        self.absent_poll = absent_poll
        self.max_backoff = max_backoff
        self.forget_unserved = forget_unserved
        self.synced = asyncio.Event()
        """Set once the first listing has been handed over."""
        self._known: dict[tuple[str, str], dict[str, Any]] = {}
        self._handed = 0
        """Events handed over so far (a watch that hands none and ends at once is a failure)."""

    async def run(self) -> None:
        """List and watch until cancelled; never returns otherwise, and raises nothing but
        the cancellation (failures are logged and retried)."""
        served: Resource | None = None
        version: str | None = None
        failures = 0
        while True:
            try:
                if served is None:
                    served = await self._served()
                    if served is None:
                        await asyncio.sleep(self.absent_poll)
                        continue
                if version is None:
                    version = await self._relist(served)
                    self.synced.set()
                began, handed = time.monotonic(), self._handed
                version = await self._watch(served, version)
                if self._handed == handed and time.monotonic() - began < SHORT_WATCH:
                    # Ended at once with nothing in it (a proxy cutting watches short, say):
                    # watching again at once would spin.
                    raise Unavailable(f"the watch of {served.plural} ended at once")
                failures = 0
                if not self.resource.version:
                    # The watch ended as planned: a good moment to see whether the preferred
                    # version moved.
                    now = await self._served()
                    if now != served:
                        served, version = now, None
            except Expired:
                log.debug("%s: watch expired; listing again", self.resource.plural)
                version = None
            except NotFound:
                # The resource is no longer served (its CRD deleted, or not yet read by an API
                # server just started): look for it again.
                log.info("%s is not served; waiting for it", self.resource.plural)
                served, version = None, None
                if self.forget_unserved:
                    self._forget_all()
                await asyncio.sleep(self.absent_poll)
            except KubeError as exc:
                failures += 1
                wait = min(self.max_backoff, 0.25 * 2**failures)
                level = logging.WARNING if failures in (1, 5) else logging.DEBUG
                log.log(level, "watch of %s: %s; again in %.1f s", self.resource.plural, exc, wait)
                await asyncio.sleep(wait)

    async def _served(self) -> Resource | None:
        """The resource at the version to read it at, or None when it is not served."""
        if self.resource.version:
            return self.resource
        preferred = await self.kube.preferred_version(self.resource.group)
        return replace(self.resource, version=preferred) if preferred else None

    async def _relist(self, served: Resource) -> str:
        """List, hand over the listing (and the deletions it reveals); returns its version."""
        params = {"labelSelector": self.label_selector} if self.label_selector else None
        body = await self.kube.request("GET", served.path(), params=params)
        items: list[dict[str, Any]] = body.get("items") or []
        listed = {_key(obj): obj for obj in items}
        gone = [obj for key, obj in self._known.items() if key not in listed]
        self._known = listed
        for obj in gone:
            self._hand("DELETED", obj)
        # The list's objects carry no kind (the list's items do not); a watch event's do.
        kind, api_version = served.kind, served.api_version
        for obj in items:
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api_version)
            self._hand(None, obj)
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, served: Resource, version: str) -> str:
        """Hand over one watch's events; returns the latest resourceVersion seen.

        Raises:
            Expired: the version is too old; KubeError: the watch failed.
        """
        events = self.kube.watch(
            served,
            version,
            timeout_seconds=self.timeout_seconds,
            label_selector=self.label_selector,
        )
        async with contextlib.aclosing(events):
            try:
                async for event in events:
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        code = obj.get("code")
                        message = obj.get("message") or "an error event"
                        if code == GONE:
                            raise Expired(str(message), code=GONE)
                        raise Unavailable(f"watch of {served.plural}: {message}", code=code or 0)
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        self._known.pop(_key(obj), None)
                    else:
                        self._known[_key(obj)] = obj
                    self._hand(kind, obj)
            except KubeError as exc:
                if exc.code == GONE and not isinstance(exc, Expired):
                    raise Expired(exc.message, code=GONE) from exc
                raise
        return version

    def forget(self, obj: dict[str, Any]) -> None:
        """Stop holding ``obj`` (its namespace and name): for a consumer that keeps only some
        objects (the dashboard keeps the newest Events), so the rest can be freed. A later
        listing hands it over again if it is still there; its deletion is not handed over."""
        self._known.pop(_key(obj), None)

    def _forget_all(self) -> None:
        """Hand every object known over as ``DELETED`` and hold none."""
        gone, self._known = list(self._known.values()), {}
        for obj in gone:
            self._hand("DELETED", obj)

    def _hand(self, kind: str | None, obj: dict[str, Any]) -> None:
        self._handed += 1
        metadata = obj.get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)
        deliver_safely(self.deliver, kind, obj, self.resource)


def deliver_safely(
    deliver: Deliver, kind: str | None, obj: dict[str, Any], resource: Resource
) -> None:
    """Call ``deliver(kind, obj)``; its failure is logged (with ``resource``'s plural) and
    not raised: a callback's failure is the callback's, and must not stop a watch, a mirror
    or another callback, or lose the events after it."""
    try:
        deliver(kind, obj)
    except Exception:
        log.exception("handling a %s event of %s failed", kind, resource.plural)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
