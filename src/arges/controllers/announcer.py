"""The announcer: Events for the transitions people make or wait for that no controller acts on.

Other controllers record an Event where they make a change (Allocated, Released, PowerCycle,
Wiped, ...). Some changes are made by people or arrive as status, and this controller says
them, on the Server they concern:

=========================================  =================================================
``spec.accepted`` becomes true             ``Accepted``
``spec.cordoned`` becomes true / false     ``Cordoned`` / ``Uncordoned``
condition ``Wipe`` becomes ``InProgress``  ``WipeStarted`` (its message)
its binding's ``Installed`` becomes        ``Installed`` / ``InstallFailed`` (Warning), with
True / False                               the condition's message
=========================================  =================================================

It remembers, in memory, what it last saw of each object: a transition is one it sees while
it runs (at start every object is first seen, and announces nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from arges.controllers.relevance import Facts
from arges.controllers.runtime import Body, Cache, Controller, Key, Watch, key_of
from arges.kube.client import KubeClient
from arges.kube.resources import SERVER_BINDINGS, SERVERS

SERVER = "server:"
BINDING = "binding:"


@dataclass(frozen=True)
class _Seen:
    accepted: bool = False
    cordoned: bool = False
    wipe: str = ""
    installed: str = ""


def _condition(body: Body, kind: str) -> dict[str, str]:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def _wipe(body: Body) -> str:
    found = _condition(body, "Wipe")
    return f"{found.get('reason', '')}@{found.get('lastTransitionTime', '')}" if found else ""


def _installed(body: Body) -> str:
    return _condition(body, "Installed").get("status", "")


def _server_facts(body: Body) -> tuple[bool, bool, str]:
    spec = body.get("spec") or {}
    return bool(spec.get("accepted")), bool(spec.get("cordoned")), _wipe(body)


class Announcer(Controller):
    """See the module docstring."""

    name = "announcer"
    workers = 2

    def __init__(self, kube: KubeClient, cache: Cache) -> None:
        super().__init__(kube, cache)
        self._seen: dict[str, _Seen] = {}

    def watches(self) -> list[Watch]:
        # A Server is written many times a minute in its life (heartbeats, power readings,
        # boot records); only changes of what is announced need a reconcile.
        servers = Facts(_server_facts)
        bindings = Facts(_installed)

        def server(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            if not servers.changed(event_type, body):
                return []
            return [(self.name, SERVER + key_of(body))]

        def binding(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            if not bindings.changed(event_type, body):
                return []
            return [(self.name, BINDING + key_of(body))]

        return [Watch(SERVERS, server), Watch(SERVER_BINDINGS, binding)]

    async def reconcile(self, key: Key) -> float | None:
        kind, _, name = key.partition(":")
        server = self.cache.get(SERVERS, name)
        if server is None:
            self._seen.pop(SERVER + name, None)
            self._seen.pop(BINDING + name, None)
            return None
        previous = self._seen.get(key)
        if kind + ":" == BINDING:
            binding = self.cache.get(SERVER_BINDINGS, name)
            if binding is None:
                self._seen.pop(key, None)
                return None
            seen = _Seen(installed=_installed(binding))
            self._seen[key] = seen
            if previous is not None and seen.installed != previous.installed:
                await self._installed(server, binding, seen.installed)
            return None
        spec = server.get("spec") or {}
        seen = _Seen(
            accepted=bool(spec.get("accepted")),
            cordoned=bool(spec.get("cordoned")),
            wipe=_wipe(server),
        )
        self._seen[key] = seen
        if previous is None:
            return None
        if seen.accepted and not previous.accepted:
            await self.kube.event(
                server,
                "Accepted",
                "accepted: Arges manages it now (its disks are wiped before first use)",
            )
        if seen.cordoned != previous.cordoned:
            if seen.cordoned:
                await self.kube.event(
                    server, "Cordoned", "cordoned: it will not be allocated until uncordoned"
                )
            else:
                await self.kube.event(server, "Uncordoned", "uncordoned: it can be allocated")
        if seen.wipe != previous.wipe and seen.wipe.startswith("InProgress@"):
            message = _condition(server, "Wipe").get("message") or "wiping disks"
            await self.kube.event(server, "WipeStarted", message)
        return None

    async def _installed(self, server: Body, binding: Body, status: str) -> None:
        found = _condition(binding, "Installed")
        message = found.get("message") or ""
        if status == "True":
            await self.kube.event(server, "Installed", message or "its target is installed")
        elif status == "False":
            await self.kube.event(
                server, "InstallFailed", message or "installation failed", type="Warning"
            )
