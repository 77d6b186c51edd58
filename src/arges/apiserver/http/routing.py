"""Routing: a resource request's URL path, parsed, and the resource type it names.

Paths follow the Kubernetes API layout::

    /api/v1[/namespaces/{ns}]/{plural}[/{name}[/status]]
    /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/status]]
"""

from __future__ import annotations

from dataclasses import dataclass

from arges.apiserver.errors import NotFound
from arges.apiserver.resources import Registry, ResourceType, Version


@dataclass(frozen=True)
class Route:
    """A resource request's target, parsed from the URL path."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_route(parts: list[str]) -> Route | None:
    """Parse path segments after ``/api/<v>`` or ``/apis/<g>/<v>`` into a :class:`Route`.

    ``parts`` starts with the group ("" for core) and version. Returns None for paths that
    name no resource (those are discovery).
    """
    group, version, rest = parts[0], parts[1], parts[2:]
    if not rest:
        return None
    namespace = None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise NotFound("the server could not find the requested resource")
    return Route(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource=rest[2] if len(rest) > 2 else None,
    )


def lookup(registry: Registry, route: Route) -> tuple[ResourceType, Version]:
    """The resource type and version ``route`` names.

    Raises:
        NotFound: no such resource, a namespace on a cluster-scoped one, or a subresource
            it does not have.
    """
    found = registry.lookup(route.group, route.version, route.plural)
    if found is None:
        raise NotFound("the server could not find the requested resource")
    rt, version = found
    if route.namespace is not None and not rt.namespaced:
        raise NotFound("the server could not find the requested resource")
    if route.subresource not in (None, "status") or (
        route.subresource == "status" and not version.status
    ):
        raise NotFound("the server could not find the requested resource")
    return rt, version
