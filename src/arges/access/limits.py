"""Per-client limits on the provisioning network: request rates, and how refusals are logged.

:class:`RateLimiter` is a token bucket per client address: ``burst`` requests at once, then
``rate`` per second; beyond that a request is answered 429 before anything is read. The
budget is far above what a machine needs (iPXE asks ``/ipxe`` a few times per boot, the
agent reports every few seconds, Talos retries its config with a backoff) and far below
what a sweep of guessed UUIDs wants.

:class:`RefusalLog` keeps a sweep from flooding the log: the first refusal of a client is
logged with its reason, the following ones within ``window`` seconds only counted, and
summed up in one line (how many, how many distinct UUIDs, how many rate-limited) by the
first request to the boot port after the window is over (or when Arges stops). One line per
client and minute, not one per request.

Both remember at most ``clients`` addresses (the least recently seen are forgotten first).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from arges.netguard import SUMMARISED

ALREADY_LIMITED = {SUMMARISED: True}
"""This log's lines are one per client per window already: the process-wide once-a-minute
filter must not hold back one client's line because another's had the same template."""
log = logging.getLogger("arges.access")

CLIENTS = 4096


class RateLimiter:
    """A token bucket per client address (see the module docstring)."""

    def __init__(
        self,
        *,
        rate: float = 10.0,
        burst: float = 40.0,
        clients: int = CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clients = clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        """Take one request from ``client``'s budget; False when it has none left."""
        now = self.clock()
        tokens, then = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.clients:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self) -> int:
        """Seconds after which a refused client has a request's worth of budget again."""
        return max(1, round(1.0 / self.rate))


@dataclass
class _Window:
    started: float
    first: str
    refused: int = 0
    limited: int = 0
    uuids: set[str] = field(default_factory=set)


class RefusalLog:
    """Logs refusals once per client and window (see the module docstring)."""

    def __init__(
        self,
        *,
        window: float = 60.0,
        clients: int = CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.clients = clients
        self.clock = clock
        self._open: OrderedDict[str, _Window] = OrderedDict()

    def refused(self, client: str, what: str, uuid: str, reason: str) -> None:
        """Note that ``what`` (``/configdata``, ...) for ``uuid`` was refused to ``client``
        with 403 because of ``reason`` (logged, never sent)."""
        self._note(client, uuid, f"{what} for {uuid or '-'} refused: {reason}", limited=False)

    def limited(self, client: str, what: str) -> None:
        """Note that a request of ``client`` to ``what`` was over its rate (429)."""
        self._note(client, "", f"{what} refused: over the rate limit", limited=True)

    def _note(self, client: str, uuid: str, first: str, *, limited: bool) -> None:
        now = self.clock()
        self.flush(now)
        window = self._open.pop(client, None)
        if window is None:
            window = _Window(now, first)
            log.warning(
                "%s from %s; further refusals of %s are summed up in %.0f s",
                first,
                client or "-",
                client or "-",
                self.window,
                extra=ALREADY_LIMITED,
            )
        else:
            window.refused += not limited
            window.limited += limited
        if uuid:
            window.uuids.add(uuid)
        self._open[client] = window
        while len(self._open) > self.clients:
            self._summarize(*self._open.popitem(last=False))

    def flush(self, now: float | None = None) -> None:
        """Sum up every window that is over (all of them when ``now`` is None)."""
        for client, window in list(self._open.items()):
            if now is None or now - window.started >= self.window:
                del self._open[client]
                self._summarize(client, window)

    def _summarize(self, client: str, window: _Window) -> None:
        if window.refused or window.limited:
            log.warning(
                "%d more request(s) from %s refused in %.0f s (%d more over the rate limit; "
                "%d distinct UUID(s))",
                window.refused,
                client or "-",
                max(0.0, self.clock() - window.started),
                window.limited,
                len(window.uuids),
                extra=ALREADY_LIMITED,
            )
