"""The Server controller: allocation state, cleanliness, and protection from deletion.

For each Server, from its own state and whether a ServerBinding of the same name exists:

- a bound server is in use and not clean (it is about to be installed);
- an unbound server is not in use; a server whose binding is being deleted has been
  released: it is recorded as not in use and not clean (so it stays so until the agent
  reports a successful wipe), a ``PowerCycle`` record from before the release is dropped so
  the power controller reboots it into the agent at once (one made since, for this wipe, is
  kept, so it is not cycled twice), and only then is the binding's
  ``metal.arges.dev/server-release`` finalizer removed: however briefly a binding existed,
  its server is wiped before reuse;
- a server that is not accepted is never clean (it is wiped once accepted);
- every server carries the ``metal.arges.dev/server-protection`` finalizer, removed only when
  it is being deleted and no binding holds it, so a bound server cannot be deleted;
- a server with no status yet is left to its registration for a few seconds from its
  creation (``arges.metal.stage.registration_wait``): the agent's registration records the
  same allocation state in its first status write, a moment after it creates the Server.

Writes carry the resourceVersion they were computed from, so a decision made on a stale
cache is refused (409) and recomputed instead of overwriting newer facts (e.g. a wipe report).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any

from arges.api.base import parse_time
from arges.api.binding import RELEASE_FINALIZER, releasing
from arges.api.server import PROTECTION_FINALIZER, Server
from arges.controllers.parsed import parsed
from arges.controllers.runtime import Body, Controller, Key, RetryLater, Watch, key_of
from arges.kube.errors import Conflict, NotFound
from arges.kube.resources import SERVER_BINDINGS, SERVERS
from arges.metal.conditions import condition_patch
from arges.metal.power import kept_on_release
from arges.metal.stage import registration_wait, stays_clean


def _finalizers(body: Body) -> list[str]:
    return list((body.get("metadata") or {}).get("finalizers") or [])


def _deleted_at(binding: Body | None) -> dt.datetime:
    """When a binding being deleted was asked to go (its ``deletionTimestamp``)."""
    meta = (binding or {}).get("metadata") or {}
    return dt.datetime.fromisoformat(str(meta["deletionTimestamp"]))


def _server_key(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
    return [("servers", key_of(body))]


def _binding_server(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
    ref = (body.get("spec") or {}).get("serverRef") or {}
    return [("servers", ref.get("name") or key_of(body))]


class ServerController(Controller):
    """See the module docstring."""

    name = "servers"

    def watches(self) -> list[Watch]:
        return [Watch(SERVERS, _server_key), Watch(SERVER_BINDINGS, _binding_server)]

    async def reconcile(self, key: Key) -> float | None:
        body = self.cache.get(SERVERS, key)
        binding = self.cache.get(SERVER_BINDINGS, key)
        if body is None:
            if binding is not None and releasing(binding):
                await self._release_done(binding)
            return None
        server = parsed(self.cache, SERVERS, Server).get(key)
        assert server is not None
        meta = body["metadata"]
        rv = meta["resourceVersion"]
        finalizers: list[str] = list(meta.get("finalizers") or [])
        released = releasing(binding)
        bound = binding is not None and not released
        if meta.get("deletionTimestamp"):
            if PROTECTION_FINALIZER in finalizers and binding is None:
                rest = [f for f in finalizers if f != PROTECTION_FINALIZER]
                await self.kube.patch(
                    SERVERS, key, {"metadata": {"finalizers": rest or None, "resourceVersion": rv}}
                )
            elif binding is not None:
                await self._deletion_blocked(server)
        elif PROTECTION_FINALIZER not in finalizers:
            await self.kube.patch(
                SERVERS,
                key,
                {
                    "metadata": {
                        "finalizers": [*finalizers, PROTECTION_FINALIZER],
                        "resourceVersion": rv,
                    }
                },
            )
            return None
        else:
            now = dt.datetime.now(dt.UTC)
            created = parse_time(meta.get("creationTimestamp"))
            wait = registration_wait(bool(body.get("status")), created, now)
            if wait:
                # Its registration's first status write is due, with these very values.
                return wait
            await self._status(server, body, bound, _deleted_at(binding) if released else None)
        if binding is not None and released:
            await self._release_done(binding)
        elif binding is not None and RELEASE_FINALIZER not in _finalizers(binding):
            # A binding made before bindings carried this finalizer.
            await self._binding_finalizers(
                binding, lambda fs: fs if RELEASE_FINALIZER in fs else [*fs, RELEASE_FINALIZER]
            )
        return None

    async def _status(
        self, server: Server, body: Body, bound: bool, released_at: dt.datetime | None
    ) -> None:
        """Record ``inUse`` and ``isClean``; ``released_at``: when the binding's deletion
        began, for a server being released (None otherwise)."""
        status = server.status
        released = released_at is not None
        in_use = bound
        is_clean = stays_clean(server, bound=bound, released=released)
        if status.in_use == in_use and status.is_clean == is_clean:
            return
        patch: dict[str, Any] = {
            "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
            "status": {"inUse": in_use, "isClean": is_clean},
        }
        if released_at is not None:
            # A release starts a new wipe: an earlier power-cycle request must not hold it off.
            kept = kept_on_release(status.conditions or [], released_at)
            patch["status"]["conditions"] = [c.to_json() for c in kept]
        # Status before Event: a kill between them loses the Event only, since the next
        # reconcile sees the status already written and has nothing to announce.
        await self.kube.patch(SERVERS, server.name, patch, subresource="status")
        if released:
            await self.kube.event(
                body, "Released", "no longer bound; it will be wiped before it is available again"
            )
        elif in_use and not status.in_use:
            binding = self.cache.get(SERVER_BINDINGS, server.name) or {}
            consumer = (binding.get("spec") or {}).get("consumerRef") or {}
            await self.kube.event(
                body, "Allocated", f"bound to {consumer.get('kind')} {consumer.get('name')}"
            )

    async def _release_done(self, binding: Body) -> None:
        """Let a deleted binding go: its server's release is recorded (or the server is
        gone)."""
        await self._binding_finalizers(
            binding, lambda fs: [f for f in fs if f != RELEASE_FINALIZER]
        )

    async def _binding_finalizers(
        self, binding: Body, change: Callable[[list[str]], list[str]]
    ) -> None:
        """Read-modify-write of a binding's finalizers on the binding as it is now (the cache
        may lag behind the deletion that made this necessary), retried on conflicts."""
        name = binding["metadata"]["name"]
        for _ in range(5):
            try:
                current = await self.kube.get(SERVER_BINDINGS, name)
            except NotFound:
                return
            finalizers = _finalizers(current)
            wanted = change(finalizers)
            if wanted == finalizers:
                return
            patch = {
                "metadata": {
                    "finalizers": wanted or None,
                    "resourceVersion": current["metadata"]["resourceVersion"],
                }
            }
            with contextlib.suppress(Conflict):
                await self.kube.patch(SERVER_BINDINGS, name, patch)
                return
        raise RetryLater(f"binding {name} keeps changing")

    async def _deletion_blocked(self, server: Server) -> None:
        now = dt.datetime.now(dt.UTC)
        await self.kube.update_status(
            SERVERS,
            server.name,
            lambda obj: condition_patch(
                obj,
                "DeletionBlocked",
                "True",
                "Bound",
                "the server is bound (see its ServerBinding); release it before deleting",
                now=now,
            ),
        )
