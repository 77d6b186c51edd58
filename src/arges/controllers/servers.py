"""The Server controller: allocation state, cleanliness, and protection from deletion.

For each Server, from its own state and whether a ServerBinding of the same name exists:

- a bound server is in use and not clean (it is about to be installed);
- an unbound server is not in use; a server that was in use and no longer is has been
  released: it stays not clean until the agent reports a successful wipe, and its
  ``PowerCycle`` record is dropped so the power controller reboots it into the agent at once;
- a server that is not accepted is never clean (it is wiped once accepted);
- every server carries the ``metal.arges.dev/server-protection`` finalizer, removed only when
  it is being deleted and no binding holds it, so a bound server cannot be deleted.

Writes carry the resourceVersion they were computed from, so a decision made on a stale
cache is refused (409) and recomputed instead of overwriting newer facts (e.g. a wipe report).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from arges.api.server import Server
from arges.controllers.runtime import Body, Controller, Key, Watch, key_of
from arges.kube.resources import SERVER_BINDINGS, SERVERS
from arges.metal.conditions import condition_patch
from arges.metal.power import POWER_CYCLE

FINALIZER = "metal.arges.dev/server-protection"


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
        if body is None:
            return None
        server = Server.from_json(body)
        meta = body["metadata"]
        rv = meta["resourceVersion"]
        finalizers: list[str] = list(meta.get("finalizers") or [])
        bound = self.cache.get(SERVER_BINDINGS, key) is not None
        if meta.get("deletionTimestamp"):
            if FINALIZER in finalizers and not bound:
                rest = [f for f in finalizers if f != FINALIZER]
                await self.kube.patch(
                    SERVERS, key, {"metadata": {"finalizers": rest or None, "resourceVersion": rv}}
                )
            elif bound:
                await self._deletion_blocked(server)
            return None
        if FINALIZER not in finalizers:
            await self.kube.patch(
                SERVERS,
                key,
                {"metadata": {"finalizers": [*finalizers, FINALIZER], "resourceVersion": rv}},
            )
            return None
        status = server.status
        in_use = bound
        is_clean = bool(status.is_clean) and server.spec.accepted and not bound
        if status.in_use == in_use and status.is_clean == is_clean:
            return None
        patch: dict[str, Any] = {
            "metadata": {"resourceVersion": rv},
            "status": {"inUse": in_use, "isClean": is_clean},
        }
        if status.in_use and not in_use:
            # A release starts a new wipe: an earlier power-cycle request must not hold it off.
            patch["status"]["conditions"] = [
                c.to_json() for c in status.conditions or [] if c.type != POWER_CYCLE
            ]
        # Status before Event: a kill between them loses the Event only, since the next
        # reconcile sees the status already written and has nothing to announce.
        await self.kube.patch(SERVERS, key, patch, subresource="status")
        if status.in_use and not in_use:
            await self.kube.event(
                body, "Released", "no longer bound; it will be wiped before it is available again"
            )
        elif in_use and not status.in_use:
            binding = self.cache.get(SERVER_BINDINGS, key) or {}
            consumer = (binding.get("spec") or {}).get("consumerRef") or {}
            await self.kube.event(
                body, "Allocated", f"bound to {consumer.get('kind')} {consumer.get('name')}"
            )
        return None

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
