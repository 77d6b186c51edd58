"""An asyncio client for the Kubernetes REST API: the only module Arges' own calls go through.

Thin by design: JSON objects in and out (controllers parse them into :mod:`arges.api`
models), one method per verb, one error tree (:mod:`arges.kube.errors`). It works unchanged
against the embedded API server and a real one. :meth:`KubeClient.watch` streams one watch;
:mod:`arges.kube.reflector` keeps a resource's objects in step with it.

    async with KubeClient(connection) as kube:
        server = await kube.get(SERVERS, "4c4c4544-...")
        await kube.patch(SERVERS, name, {"status": {"power": "on"}}, subresource="status")
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import Any, Self

import aiohttp
import orjson
from aiohttp.http import SERVER_SOFTWARE

from arges import __version__
from arges.kube.connection import Connection
from arges.kube.errors import Conflict, KubeError, NotFound, Unavailable, from_status
from arges.kube.events import EventRecorder
from arges.kube.resources import Resource

log = logging.getLogger(__name__)

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5)
LOCAL = "http://localhost"
"""The base URL of requests over a Unix socket (the host only fills the Host header)."""

CONCURRENCY = 32
"""Requests one client has in flight at most (its connection pool; as many local calls)."""


def user_agent(component: str) -> str:
    """The User-Agent of ``component``'s requests, in client-go's shape (``arges/v0.1.0
    (linux/x86_64) Python/3.11 aiohttp/3.14.5``). kube-apiserver names the field manager of
    a write that names none after what comes before its first '/' (``managedFields`` show
    ``arges``, as they show ``kube-controller-manager`` for its writes), and its audit log
    shows it whole."""
    system = f"{platform.system().lower()}/{platform.machine()}"
    return f"{component}/v{__version__} ({system}) {SERVER_SOFTWARE}"


class KubeClient:
    """A session to one API server (see the module docstring).

    Every method raises :class:`~arges.kube.errors.KubeError` subclasses only.
    """

    def __init__(self, connection: Connection, *, component: str = "arges") -> None:
        """Requests and watches go to ``connection.local`` when it is set (the API server
        in this process), lists over HTTP."""
        self.connection = connection
        self.component = component
        self._user_agent = user_agent(component)
        self.local = connection.local
        # As many local calls at once as HTTP requests (the connection pool's size): a burst
        # (every server booting) waits its turn here, as it waited for a connection.
        self._local_slots = asyncio.Semaphore(CONCURRENCY)
        self._session: aiohttp.ClientSession | None = None
        self._base = connection.server
        self._events = EventRecorder(self, component)

    async def __aenter__(self) -> Self:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def open(self) -> None:
        """Make the HTTP session (over the connection's Unix socket, else TLS to its server);
        idempotent: entering the client and each HTTP request or watch call it."""
        if self._session is None:
            connector: aiohttp.BaseConnector
            if self.connection.unix_socket is not None:
                connector = aiohttp.UnixConnector(
                    str(self.connection.unix_socket), limit=CONCURRENCY
                )
                self._base = LOCAL
            else:
                connector = aiohttp.TCPConnector(
                    ssl=self.connection.ssl_context(), limit=CONCURRENCY
                )
                self._base = self.connection.server
            self._session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)

    async def close(self) -> None:
        """Close the HTTP session and its connections (a later request opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        """JSON asked for, with the current bearer token when there is one, as the
        component (:func:`user_agent`)."""
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        token = self.connection.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        http: bool = False,
    ) -> Any:
        """One API call; returns the decoded JSON answer. ``http``: over HTTP even to a
        local API server (a list, whose answer may stream)."""
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            # orjson: several times the standard library's speed, on every call a plane makes.
            data = orjson.dumps(body)
        what = f"{method} {path}"
        if self.local is not None and not http:
            try:
                # The same bound as over HTTP; the request itself runs on (as a server's
                # does when its client gives up).
                async with asyncio.timeout(TIMEOUT.total), self._local_slots:
                    status, raw = await self.local.local(method, path, params or {}, headers, data)
            except TimeoutError as exc:
                raise Unavailable(f"{what}: no answer within {TIMEOUT.total} s") from exc
            decoded = _decoded(raw)
            if status >= 400:
                raise from_status(status, decoded, what)
            return decoded
        self.open()
        assert self._session is not None
        try:
            async with self._session.request(
                method, self._base + path, data=data, headers=headers, params=params
            ) as resp:
                decoded = _decoded(await resp.read())
                if resp.status >= 400:
                    raise from_status(resp.status, decoded, what)
                return decoded
        except KubeError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unavailable(f"{what}: {exc or type(exc).__name__}") from exc

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One object. Raises NotFound when there is none."""
        obj: dict[str, Any] = await self.request("GET", res.path(namespace, name))
        return obj

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every matching object (across namespaces when ``namespace`` is None), or the first
        ``limit`` of them."""
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit is not None:
            params["limit"] = str(limit)
        body = await self.request("GET", res.path(namespace), params=params, http=True)
        items: list[dict[str, Any]] = body.get("items") or []
        return items

    async def watch(
        self,
        res: Resource,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The events of a watch of ``res`` (across namespaces) from ``resource_version``, as
        the server sends them: ``{"type": "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" |
        "ERROR", "object": ...}``, bookmarks asked for, until the server ends the watch after
        about ``timeout_seconds`` (the Kubernetes API's watch, as client-go's reflector asks
        for it: ``watch=1&allowWatchBookmarks=true&timeoutSeconds=N``), of the objects
        ``label_selector`` selects when given (one that stops matching arrives as DELETED).

        Events are read off the stream as they come, whatever their size (one JSON document
        per line).

        Raises:
            KubeError: the watch was refused (410 when ``resource_version`` is too old), or
                broke off (:class:`Unavailable`).
        """
        headers = self._headers()
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        what = f"WATCH {res.path()}"
        if self.local is not None:
            status, answer = await self.local.local_watch(res.path(), params, headers)
            if isinstance(answer, bytes):
                if status >= 400:
                    raise from_status(status, _decoded(answer), what)
                return
            try:
                async for event in _events(answer, what):
                    yield event
            finally:
                answer.close()
            return
        self.open()
        assert self._session is not None
        # No total: a watch lasts its timeout; a silent stream is one that broke.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=TIMEOUT.connect, sock_read=timeout_seconds + 30
        )
        try:
            async with self._session.get(
                self._base + res.path(), params=params, headers=headers, timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    raise from_status(resp.status, _decoded(await resp.read()), what)
                async for event in _events(resp.content.iter_any(), what):
                    yield event
        except KubeError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unavailable(f"{what}: {exc or type(exc).__name__}") from exc

    async def preferred_version(self, group: str) -> str | None:
        """The version of ``group`` the API server prefers (discovery), or None when it
        serves no such group."""
        try:
            body = await self.request("GET", f"/apis/{group}")
        except NotFound:
            return None
        preferred = (body or {}).get("preferredVersion") or {}
        version = preferred.get("version")
        return str(version) if version else None

    async def create(
        self, res: Resource, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Create ``obj``. Raises AlreadyExists when the name is taken."""
        body = {"apiVersion": res.api_version, "kind": res.kind, **obj}
        created: dict[str, Any] = await self.request("POST", res.path(namespace), body)
        return created

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        content_type: str = MERGE,
    ) -> dict[str, Any]:
        """Patch an object (JSON merge patch by default; a list is sent as JSON Patch)."""
        if isinstance(patch, list):
            content_type = JSON_PATCH
        patched: dict[str, Any] = await self.request(
            "PATCH", res.path(namespace, name, subresource), patch, content_type=content_type
        )
        return patched

    async def update_status(
        self,
        res: Resource,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        namespace: str | None = None,
        *,
        attempts: int = 5,
        current: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Read-modify-write of an object's status, retried on 409 (client-go's
        ``RetryOnConflict``).

        ``change`` gets the object as just read and returns the status fields to merge, or
        None when nothing needs writing. The patch carries the resourceVersion ``change``
        saw, so a field another writer changed meanwhile (a condition in the same list, say)
        is never lost: the write is refused and recomputed from the newer object.
        ``current``: the object as the caller already has it (a watch cache's copy, say),
        used for the first try instead of a read; if it is out of date the write is refused
        the same way and the object read afresh. When ``change`` finds nothing to write in
        it, that copy is returned as it is.

        Returns the object as written, or as read when nothing changed.

        Raises:
            NotFound: the object does not exist; Conflict: still conflicting after
            ``attempts`` tries; KubeError: any other failure.
        """
        tries = 0
        while True:
            if current is None:
                current = await self.get(res, name, namespace)
            status = change(current)
            if status is None:
                return current
            patch = {
                "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                "status": status,
            }
            try:
                return await self.patch(res, name, patch, namespace, subresource="status")
            except Conflict:
                tries += 1
                if tries >= attempts:
                    raise
                current = None

    async def replace(
        self, res: Resource, obj: dict[str, Any], *, subresource: str | None = None
    ) -> dict[str, Any]:
        """PUT ``obj`` (which carries its resourceVersion: a stale one raises Conflict)."""
        meta = obj["metadata"]
        replaced: dict[str, Any] = await self.request(
            "PUT", res.path(meta.get("namespace"), meta["name"], subresource), obj
        )
        return replaced

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> None:
        """Delete an object; with ``uid``, only that incarnation of it (else Conflict)."""
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation,
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        await self.request("DELETE", res.path(namespace, name), options)

    async def wait_deleted(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        within: float,
        interval: float = 1.0,
    ) -> bool:
        """Poll every ``interval`` seconds until ``name`` no longer exists (its finalizers
        done); False when it still exists after ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                await self.get(res, name, namespace)
            except NotFound:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(interval)

    async def event(
        self,
        regarding: dict[str, Any],
        reason: str,
        message: str,
        *,
        type: str = "Normal",
    ) -> None:
        """Record a ``core/v1`` Event about ``regarding`` (in ``default`` when cluster-scoped),
        or count a repeat of one recorded before (see :mod:`arges.kube.events`).

        Failures are logged, never raised: an event is a courtesy, not part of the change.
        """
        await self._events.record(regarding, reason, message, type)


def _decoded(raw: bytes) -> Any:
    """An answer's body: its JSON, else its text (a proxy's error page, say), else None."""
    try:
        return orjson.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


async def _events(chunks: AsyncIterable[bytes], what: str) -> AsyncIterator[dict[str, Any]]:
    """The watch events of a stream of ``chunks``: one JSON document per line, however the
    lines are cut into chunks.

    Raises:
        Unavailable: a line that is not JSON (``what`` names the watch).
    """
    parts: list[bytes] = []
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            parts.append(chunk[start:end])
            line = b"".join(parts)
            parts.clear()
            start = end + 1
            if line.strip():
                try:
                    event: dict[str, Any] = orjson.loads(line)
                except ValueError as exc:
                    raise Unavailable(f"{what}: an event that is not JSON: {exc}") from exc
                yield event
        if start < len(chunk):
            parts.append(chunk[start:])
