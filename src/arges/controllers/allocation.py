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

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from arges.api.base import LocalObjectReference, ObjectReference, SecretReference
from arges.api.binding import RELEASE_FINALIZER, Role, ServerBinding, ServerBindingSpec
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, NotFound
from arges.kube.resources import SERVER_BINDINGS, SERVERS
from arges.metal.allocation import allocatable, candidates
from arges.metal.classes import CompiledClass, compile_class

log = logging.getLogger(__name__)


ALLOCATING_AT_ONCE = 16
"""Candidates a call reads and locks at once (:func:`allocate_many`)."""


async def allocate(
    kube: KubeClient,
    server_class: ServerClass,
    servers: Mapping[str, Server],
    bound: set[str],
    *,
    consumer: ObjectReference,
    role: Role | None = None,
    config_secret: Callable[[str], SecretReference] | None = None,
    labels: dict[str, str] | None = None,
) -> ServerBinding | None:
    """Bind one server of ``server_class`` to ``consumer``; None when none is available.
    See :func:`allocate_many`, whose arguments these are.

    Raises:
        QualifierError: the class cannot be compiled.
        KubeError: the API failed in a way other than losing a race.
    """
    made = await allocate_many(
        kube,
        server_class,
        servers,
        bound,
        1,
        consumer=consumer,
        role=role,
        config_secret=config_secret,
        labels=labels,
    )
    return made[0] if made else None


async def allocate_many(
    kube: KubeClient,
    server_class: ServerClass,
    servers: Mapping[str, Server],
    bound: set[str],
    count: int,
    *,
    consumer: ObjectReference,
    role: Role | None = None,
    config_secret: Callable[[str], SecretReference] | None = None,
    labels: dict[str, str] | None = None,
) -> list[ServerBinding]:
    """Bind up to ``count`` servers of ``server_class`` to ``consumer``; the bindings made
    (fewer when too few are available).

    Candidates are tried ``ALLOCATING_AT_ONCE`` at a time, each read and locked as the module
    docstring says, concurrently: a cluster's twenty members took twenty round trips of
    three requests each, one after another, and on a busy API server that was seconds per
    cluster while every other cluster waited for the controller's workers. ``bound`` names
    the servers not to try (bound as far as the caller knows); every server this call tries
    is added to it, so a caller binding in several calls asks for each server once: with a
    lagging cache, every call would otherwise try again, one read and one create each, all
    the servers other allocators took since the cache last saw a binding. ``config_secret``
    names the Secret that holds (or will hold) a server's machine config, given the server's
    name; ``labels`` go on the bindings.

    Raises:
        QualifierError: the class cannot be compiled.
        KubeError: the API failed in a way other than losing a race (the bindings made by
            the same round stand: they are labelled, and their consumer finds them).
    """
    compiled = compile_class(server_class)
    made: list[ServerBinding] = []
    while len(made) < count:
        want = min(count - len(made), ALLOCATING_AT_ONCE)
        batch = list(itertools.islice(candidates(compiled, servers, bound), want))
        if not batch:
            break
        bound.update(server.name for server in batch)
        results = await asyncio.gather(
            *(
                _bind(
                    kube,
                    compiled,
                    server,
                    consumer=consumer,
                    role=role,
                    config_secret=config_secret,
                    labels=labels,
                )
                for server in batch
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        made += [r for r in results if isinstance(r, ServerBinding)]
    return made


async def _bind(
    kube: KubeClient,
    compiled: CompiledClass,
    server: Server,
    *,
    consumer: ObjectReference,
    role: Role | None,
    config_secret: Callable[[str], SecretReference] | None,
    labels: dict[str, str] | None,
) -> ServerBinding | None:
    """Read ``server`` afresh and, if still allocatable, take its lock; None when it is not
    allocatable any more or another allocator holds it."""
    try:
        fresh = Server.from_json(await kube.get(SERVERS, server.name))
    except NotFound:
        fresh = None
    if fresh is None or not allocatable(compiled, fresh):
        log.info("skipping %s: no longer allocatable", server.name)
        return None
    spec = ServerBindingSpec(
        server_ref=LocalObjectReference(name=server.name),
        consumer_ref=consumer,
        server_class_ref=LocalObjectReference(name=compiled.name),
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
        return None
    return ServerBinding.from_json(created)
