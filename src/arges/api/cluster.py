"""TalosCluster: a whole Talos cluster declared in one object (``cluster.arges.dev/v1alpha1``).

A user creates, scales and deletes a cluster by editing one namespaced object, the way Omni
users do with a cluster template and Sidero users did with a Cluster API manifest. Members
are servers bound through ServerBindings whose consumer is the TalosCluster; their machine
configs are rendered from the cluster's secrets bundle and patches (cluster, then pool, then
ServerClass, then Server).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from arges.api.base import Condition, JSONPatchOperation, LocalObjectReference, Model, Object
from arges.api.binding import Role

CLUSTER_GROUP = "cluster.arges.dev"
Phase = Literal["Pending", "Provisioning", "Running", "Scaling", "Deleting", "Failed"]
MemberState = Literal["Allocated", "Booting", "ConfigDelivered", "Installed", "Ready"]
CONTROL_PLANE_POOL = "controlplane"


class SecretKeyReference(Model):
    """A key of a Secret in the referrer's namespace."""

    name: str = Field(description="The Secret's name.")
    key: str = Field(description="The key in its data.")


class Pool(Model):
    """Machines of one role drawn from one ServerClass."""

    replicas: int = Field(default=1, ge=0, le=1000, description="How many servers the pool holds.")
    server_class_ref: LocalObjectReference = Field(
        default_factory=lambda: LocalObjectReference(name="any"),
        description="ServerClass the pool's servers are allocated from.",
    )
    config_patches: list[JSONPatchOperation] | None = Field(
        default=None, description="RFC 6902 patches for this pool's machine configs."
    )
    strategic_patches: list[str] | None = Field(
        default=None, description="Talos strategic merge patches for this pool's machine configs."
    )
    patches_from: list[SecretKeyReference] | None = Field(
        default=None,
        description="Talos patches (either kind) read from Secrets of the cluster's namespace, "
        "applied after this pool's own: for patches that carry credentials, which a machine "
        "config (itself a Secret) may hold but this object may not.",
    )


class WorkerPool(Pool):
    """A named pool of workers."""

    name: str = Field(description="Pool name, unique in the cluster (a DNS-1123 label).")


class TalosClusterSpec(Model):
    """The desired cluster."""

    endpoint: str = Field(
        description="The Kubernetes control-plane endpoint, e.g. https://10.5.0.10:6443 (a VIP "
        "or a load balancer in front of the control planes)."
    )
    talos_version: str = Field(default="v1.11", description="Talos config contract, e.g. v1.11.")
    kubernetes_version: str | None = Field(
        default=None, description="Kubernetes version (default: Talos' default for its version)."
    )
    control_plane: Pool = Field(default_factory=Pool, description="The control-plane pool.")
    workers: list[WorkerPool] | None = Field(default=None, description="Worker pools.")
    config_patches: list[JSONPatchOperation] | None = Field(
        default=None, description="RFC 6902 patches for every member's machine config."
    )
    strategic_patches: list[str] | None = Field(
        default=None, description="Talos strategic merge patches for every member's config."
    )
    install_disk: str | None = Field(
        default=None, description="Disk Talos installs to, e.g. /dev/sda (default: Talos')."
    )


class Member(Model):
    """One server of the cluster, as last observed."""

    server: str = Field(description="The Server (and ServerBinding) name.")
    role: Role
    pool: str
    state: MemberState


class TalosClusterStatus(Model):
    """Where the cluster is."""

    phase: Phase | None = None
    control_planes: str | None = Field(
        default=None, description="Ready over desired control planes, e.g. 1/3."
    )
    worker_count: str | None = Field(default=None, description="Ready over desired workers.")
    members: list[Member] | None = None
    talosconfig_secret: str | None = Field(
        default=None, description="Secret (key `talosconfig`) with the admin talosconfig."
    )
    kubeconfig_secret: str | None = Field(
        default=None, description="Secret (key `kubeconfig`) with the admin kubeconfig, once known."
    )
    observed_generation: int | None = None
    conditions: list[Condition] | None = None


class TalosCluster(Object):
    """TalosCluster is a Talos Kubernetes cluster declared in one object: endpoint, versions,
    a control-plane pool and worker pools drawn from ServerClasses, and config patches. Arges
    allocates servers, renders and delivers their machine configs, bootstraps etcd, and
    releases (wipes) servers when the cluster shrinks or is deleted."""

    api_version: str = f"{CLUSTER_GROUP}/v1alpha1"
    kind: str = "TalosCluster"
    spec: TalosClusterSpec
    status: TalosClusterStatus = Field(default_factory=TalosClusterStatus)
