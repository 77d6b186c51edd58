"""Reading Cluster API's own objects (Cluster, Machine) at the version the API server serves.

Cluster API's Cluster and Machine are served at v1beta2 and/or v1beta1 depending on the
release installed (or not at all: the provider then waits). The version is found by
discovery when first needed, and again while Cluster API is absent, so CRDs installed after
Arges started are picked up. Watches ask for whatever version the API server prefers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import CAPI, Resource, capi_clusters, capi_machines

CLUSTERS_WATCH = Resource(CAPI, "", "clusters", "Cluster", namespaced=True)
"""Cluster API's Cluster, as watched (and cached): at the preferred version."""
MACHINES_WATCH = Resource(CAPI, "", "machines", "Machine", namespaced=True)
"""Cluster API's Machine, as watched (and cached): at the preferred version."""


class ClusterApi:
    """Reads of Cluster API's Cluster and Machine, at the version the API server prefers."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self._version: str | None = None

    async def version(self) -> str | None:
        """The served Cluster API core version (None while Cluster API is not installed)."""
        if self._version is None:
            self._version = await self.kube.preferred_version(CAPI)
        return self._version

    async def _get(
        self, make: Callable[[str], Resource], namespace: str, name: str
    ) -> dict[str, Any] | None:
        version = await self.version()
        if version is None or not name:
            return None
        try:
            body: dict[str, Any] = await self.kube.get(make(version), name, namespace)
        except NotFound:
            return None
        return body

    async def cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Cluster, or None when it (or Cluster API) does not exist."""
        return await self._get(capi_clusters, namespace, name)

    async def machine(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Machine, or None when it (or Cluster API) does not exist."""
        return await self._get(capi_machines, namespace, name)
