"""API discovery documents: what groups, versions and resources this server serves.

Both forms kube-apiserver offers are built from the registry:

- legacy discovery: ``/api`` (APIVersions), ``/apis`` (APIGroupList), ``/apis/<group>``
  (APIGroup), ``/api/v1`` and ``/apis/<group>/<version>`` (APIResourceList);
- aggregated discovery (``apidiscovery.k8s.io`` v2, and v2beta1 for kubectl 1.27 to 1.29):
  ``/api`` and ``/apis`` answer an ``APIGroupDiscoveryList`` when the Accept header asks for
  it, so kubectl learns every resource in two requests.
"""

from __future__ import annotations

from typing import Any

from arges.apiserver.resources import Registry, ResourceType, Version, version_priority

STATUS_VERBS = ["get", "patch", "update"]


def api_versions(server_address: str) -> dict[str, Any]:
    """``/api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    """``/apis``: every named group."""
    groups = registry.groups()
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, vs) for g, vs in sorted(groups.items(), key=_group_order) if g],
    }


def _group_order(item: tuple[str, list[str]]) -> tuple[int, str]:
    # Built-in Kubernetes groups first, as kube-apiserver orders them.
    return (0 if item[0].endswith(".k8s.io") else 1, item[0])


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    """``/apis/<group>``, or None when the group is not served."""
    versions = registry.groups().get(group)
    if not versions or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _types_in(registry: Registry, group: str, version: str) -> list[tuple[ResourceType, Version]]:
    out = []
    for rt in sorted(registry.all(), key=lambda r: r.plural):
        if rt.group == group:
            v = rt.version(version)
            if v is not None:
                out.append((rt, v))
    return out


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """``/api/v1`` or ``/apis/<group>/<version>``, or None when not served."""
    types = _types_in(registry, group, version)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for rt, v in types:
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        if v.status:
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": STATUS_VERBS,
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def aggregated(registry: Registry, *, core: bool, api_version: str) -> dict[str, Any]:
    """An ``APIGroupDiscoveryList`` of the core group (``core``) or of all named groups.

    ``api_version`` is ``apidiscovery.k8s.io/v2`` or ``apidiscovery.k8s.io/v2beta1``; the
    two have the same shape.
    """
    items = []
    for group, versions in sorted(registry.groups().items(), key=_group_order):
        if bool(group) == core:
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": v,
                        "resources": [
                            _discovery_resource(rt, ver)
                            for rt, ver in _types_in(registry, group, v)
                        ],
                        "freshness": "Current",
                    }
                    for v in sorted(versions, key=version_priority)
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    }


def _discovery_resource(rt: ResourceType, v: Version) -> dict[str, Any]:
    kind = {"group": rt.group, "version": v.name, "kind": rt.kind}
    out: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": kind,
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        out["shortNames"] = list(rt.short_names)
    if rt.categories:
        out["categories"] = list(rt.categories)
    if v.status:
        out["subresources"] = [
            {"subresource": "status", "responseKind": kind, "verbs": STATUS_VERBS}
        ]
    return out
