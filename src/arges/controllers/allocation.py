"""Allocating a server: pick candidates (pure), then take the lock (a ServerBinding create).

The binding is named after the server, so a create that meets 409 AlreadyExists lost a race
and the allocator moves on to the next candidate; two allocators (or two controller
instances) can never hold one server. Candidates come from a cache that may lag, so each is
read afresh just before the lock and skipped if it turned out not to be allocatable after all
(cordoned, dirty, deleted).

The read comes before the lock, not after: once the binding exists, the Server controller
marks the server in use and not clean, and a read after it cannot tell that mark from a
server that was dirty already. Reading after the lock gave back servers that were
allocatable whenever the Server controller was the quicker (seen on a loaded machine), and
a binding given back sends its server through a wipe. A change in the moment between the
read and the lock is the same as one just after the allocation (a cordon, a deletion, which
the bound server's protection holds off); a server cannot be bound twice, the lock sees to
that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from arges.api.base import LocalObjectReference, ObjectReference, SecretReference
from arges.api.binding import RELEASE_FINALIZER, Role, ServerBinding, ServerBindingSpec
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, NotFound
from arges.kube.resources import SERVER_BINDINGS, SERVERS
from arges.metal.allocation import allocatable, candidates
from arges.metal.classes import compile_class

log = logging.getLogger(__name__)


async def allocate(
    kube: KubeClient,
    server_class: ServerClass,
    servers: list[Server],
    bound: set[str],
    *,
    consumer: ObjectReference,
    role: Role | None = None,
    config_secret: Callable[[str], SecretReference] | None = None,
    labels: dict[str, str] | None = None,
) -> ServerBinding | None:
    """Bind one server of ``server_class`` to ``consumer``; None when none is available.

    ``bound`` names the servers not to try (bound as far as the caller knows); the servers
    this call finds taken (its create met 409) or no longer allocatable are added to it, so a
    caller binding several servers in a row asks for each of them once: with a lagging cache,
    every call would otherwise try again, one read and one create each, all the servers other
    allocators took since the cache last saw a binding. ``config_secret`` names the Secret
    that holds (or will hold) a server's machine config, given the server's name; ``labels``
    go on the binding.

    Raises:
        QualifierError: the class cannot be compiled.
        KubeError: the API failed in a way other than losing a race.
    """
    compiled = compile_class(server_class)
    for server in candidates(compiled, servers, bound):
        try:
            fresh = Server.from_json(await kube.get(SERVERS, server.name))
        except NotFound:
            fresh = None
        if fresh is None or not allocatable(compiled, fresh):
            log.info("skipping %s: no longer allocatable", server.name)
            bound.add(server.name)
            continue
        spec = ServerBindingSpec(
            server_ref=LocalObjectReference(name=server.name),
            consumer_ref=consumer,
            server_class_ref=LocalObjectReference(name=server_class.name),
            config_secret_ref=config_secret(server.name) if config_secret else None,
            role=role,
        )
        body: dict[str, Any] = {
            "metadata": {
                "name": server.name,
                "labels": labels or {},
                "finalizers": [RELEASE_FINALIZER],
            },
            "spec": spec.to_json(),
        }
        try:
            created = await kube.create(SERVER_BINDINGS, body)
        except AlreadyExists:
            bound.add(server.name)
            continue
        return ServerBinding.from_json(created)
    return None
