"""In-memory mirrors of API resources, kept current by list-then-watch (client-go's informer).

The dashboard renders from these mirrors, so a page costs no API call, and every watch event
wakes the browsers' live streams. Each :class:`Informer` lists its resource, then watches
from the list's resourceVersion with bookmarks; a dropped watch resumes from the last
version seen, and history the server no longer has (410 Gone) means listing again. Errors
are retried with capped backoff, never raised: the dashboard shows what it last saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from arges.errors import ArgesError
from arges.kube.connection import Connection
from arges.kube.resources import Resource
from arges.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Body = dict[str, Any]
WATCH_SECONDS = 300
MAX_BACKOFF = 30.0


class Gone(ArgesError):
    """The watch's resourceVersion is too old (410): list again."""


def key_of(body: Body) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


class Informer:
    """The objects of one resource, across namespaces (see the module docstring).

    ``keep`` bounds what is held: called after each change with the objects, it returns the
    keys to drop (the dashboard keeps the newest Events only).
    """

    def __init__(
        self,
        connection: Connection,
        session: aiohttp.ClientSession,
        resource: Resource,
        changed: Callable[[Resource], None],
        keep: Callable[[dict[str, Body]], list[str]] | None = None,
    ) -> None:
        self.connection = connection
        self.session = session
        self.resource = resource
        self.changed = changed
        self.keep = keep
        self.objects: dict[str, Body] = {}
        self._version = ""

    async def run(self) -> None:
        """Mirror the resource until cancelled."""
        failures = 0
        while True:
            try:
                if not self._version:
                    await self._list()
                await self._watch()
                failures = 0
            except Gone:
                self._version = ""
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2**failures)
                log.info(
                    "dashboard: watching %s failed (%s); again in %.0f s",
                    self.resource.plural,
                    exc or type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.connection.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _list(self) -> None:
        url = self.connection.server + self.resource.path()
        async with self.session.get(url, headers=self._headers()) as resp:
            if resp.status == 404:
                # Not installed (an optional CRD): nothing to show, look again later.
                self._replace({}, "")
                raise aiohttp.ClientError(f"{self.resource.plural} is not served")
            resp.raise_for_status()
            body = await resp.json()
        items = {key_of(item): item for item in body.get("items") or []}
        self._replace(items, str((body.get("metadata") or {}).get("resourceVersion", "")))

    def _replace(self, items: dict[str, Body], version: str) -> None:
        kind = self.resource.kind
        api_version = self.resource.api_version
        for item in items.values():
            # List items carry no kind; the templates and Events need it.
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        self.objects = items
        self._version = version
        self._trim()
        self.changed(self.resource)

    async def _watch(self) -> None:
        url = self.connection.server + self.resource.path()
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self._version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=WATCH_SECONDS + 30)
        async with self.session.get(
            url, params=params, headers=self._headers(), timeout=timeout
        ) as resp:
            if resp.status == 410:
                raise Gone()
            resp.raise_for_status()
            async for line in resp.content:
                if line.strip():
                    self._apply(json.loads(line))

    def _apply(self, event: Body) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ValueError(str(obj.get("message") or "watch error"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._version = str(version)
        if kind == "BOOKMARK":
            return
        if kind == "DELETED":
            self.objects.pop(key_of(obj), None)
        else:
            self.objects[key_of(obj)] = obj
        self._trim()
        self.changed(self.resource)

    def _trim(self) -> None:
        if self.keep is not None:
            for key in self.keep(self.objects):
                self.objects.pop(key, None)


class Informers:
    """Several informers on one HTTP session, started and stopped together."""

    def __init__(
        self, connection: Connection, resources: list[Resource], changed: Callable[[Resource], None]
    ) -> None:
        self.connection = connection
        self.resources = resources
        self.changed = changed
        self.by_plural: dict[str, Informer] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, keep: dict[str, Callable[[dict[str, Body]], list[str]]]) -> None:
        """Start one informer per resource (``keep`` by plural, see :class:`Informer`)."""
        connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context(), limit=0)
        self._session = aiohttp.ClientSession(connector=connector)
        for resource in self.resources:
            informer = Informer(
                self.connection, self._session, resource, self.changed, keep.get(resource.plural)
            )
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
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
