"""Boot requests refused while the plane is paused (see :mod:`arges.api.plane`).

``refusal()`` says why requests are refused now (None: serve them). The ``/ipxe`` decision
then fails as an unreachable API does, which the boot HTTP service answers 503 (the chain
script tries again); the other routes on the boot port (``/configdata``, the agent's, the
agent ISOs) answer 503 with the reason and ``Retry-After``: Talos and the agent retry. Nothing
is read or written meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web

from arges.boot.http import Decider
from arges.boot.ipxe import BootAnswer
from arges.kube.errors import Unavailable

Refusal = Callable[[], str | None]
RETRY_AFTER = "10"


class GatedDecider:
    """A :class:`~arges.boot.http.Decider` that decides nothing while ``refusal()`` says so."""

    def __init__(self, decider: Decider, refusal: Refusal) -> None:
        self.decider = decider
        self.refusal = refusal

    async def decide(self, uuid: str, client: str, mac: str) -> BootAnswer:
        """As the wrapped decider, unless refused.

        Raises:
            Unavailable: refused (the reason is the message); as the wrapped decider.
        """
        why = self.refusal()
        if why is not None:
            raise Unavailable(why)
        return await self.decider.decide(uuid, client, mac)


def gated(routes: Sequence[web.RouteDef], refusal: Refusal) -> list[web.RouteDef]:
    """``routes`` answering 503 with the reason while ``refusal()`` gives one."""

    def wrap(route: web.RouteDef) -> web.RouteDef:
        handler = route.handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            why = refusal()
            if why is not None:
                return web.Response(
                    status=503, text=f"{why}; retry later\n", headers={"Retry-After": RETRY_AFTER}
                )
            return await handler(request)

        return web.RouteDef(route.method, route.path, guarded, route.kwargs)

    return [wrap(r) for r in routes]
