"""Which server to allocate for a request: a pure ordering of candidates.

A candidate is a member of the requested class that is clean (wiped since its last use),
not bound, and not being deleted. Candidates are ordered by name, so allocation is
deterministic and two allocators racing for servers contend for the same one first; the
ServerBinding create (named after the server) decides the race.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from arges.api.server import Server
from arges.metal.classes import CompiledClass, matches


def allocatable(cls: CompiledClass, server: Server) -> bool:
    """Whether ``server``, as read, may be bound for ``cls``: clean and a member of it (which
    excludes servers not accepted, cordoned or being deleted)."""
    return bool(server.status.is_clean) and matches(cls, server)


def candidates(
    cls: CompiledClass, servers: Mapping[str, Server], bound: set[str]
) -> Iterator[Server]:
    """Servers (``servers``: by name) that may be bound for ``cls`` now, in allocation order,
    each judged only when the one before it is taken: an allocator wants a few, and the
    unbound ones of a 2,000-server fleet were each judged for every few a cluster wanted."""
    for name in sorted(servers.keys() - bound):
        server = servers[name]
        if allocatable(cls, server):
            yield server
