"""The Kubernetes resources Arges reads and writes, by API path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """A resource's coordinates: group ("" for core), version, plural, scope, kind."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The REST path of the collection, or of one object (and its subresource)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


METAL = "metal.arges.dev"
SERVERS = Resource(METAL, "v1alpha1", "servers", "Server", namespaced=False)
SERVER_CLASSES = Resource(METAL, "v1alpha1", "serverclasses", "ServerClass", namespaced=False)
ENVIRONMENTS = Resource(METAL, "v1alpha1", "environments", "Environment", namespaced=False)
SERVER_BINDINGS = Resource(METAL, "v1alpha1", "serverbindings", "ServerBinding", namespaced=False)
TALOS_CLUSTERS = Resource(
    "cluster.arges.dev", "v1alpha1", "talosclusters", "TalosCluster", namespaced=True
)
CONSTELLATIONS = Resource(
    "cluster.arges.dev", "v1alpha1", "constellations", "Constellation", namespaced=True
)
MANAGEMENT_PLANES = Resource(
    METAL, "v1alpha1", "managementplanes", "ManagementPlane", namespaced=False
)
SECRETS = Resource("", "v1", "secrets", "Secret", namespaced=True)
EVENTS = Resource("", "v1", "events", "Event", namespaced=True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)

INFRASTRUCTURE = "infrastructure.cluster.x-k8s.io"
METAL_CLUSTERS = Resource(INFRASTRUCTURE, "v1alpha3", "metalclusters", "MetalCluster", True)
METAL_MACHINES = Resource(INFRASTRUCTURE, "v1alpha3", "metalmachines", "MetalMachine", True)
METAL_MACHINE_TEMPLATES = Resource(
    INFRASTRUCTURE, "v1alpha3", "metalmachinetemplates", "MetalMachineTemplate", True
)

CAPI = "cluster.x-k8s.io"
CAPI_VERSIONS = ("v1beta2", "v1beta1")
"""Cluster API core versions Arges reads, newest first; the fields it reads (owner references,
labels, ``spec.paused``, ``spec.controlPlaneEndpoint``, ``spec.bootstrap.dataSecretName``,
the infrastructure-ready status) have the same JSON paths in both."""


def capi_clusters(version: str) -> Resource:
    """Cluster API's Cluster at ``version``."""
    return Resource(CAPI, version, "clusters", "Cluster", namespaced=True)


def capi_machines(version: str) -> Resource:
    """Cluster API's Machine at ``version``."""
    return Resource(CAPI, version, "machines", "Machine", namespaced=True)
