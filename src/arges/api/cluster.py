"""TalosCluster: a whole Talos cluster declared in one object (``cluster.arges.dev/v1alpha1``).

A user creates, scales, upgrades and deletes a cluster by editing one namespaced object, the
way Omni users do with a cluster template and Sidero users did with a Cluster API manifest.
Members are servers bound through ServerBindings whose consumer is the TalosCluster; their
machine configs are rendered from the cluster's secrets bundle and patches (cluster, then
pool, then ServerClass, then Server). A change of the installer image, of the Kubernetes
version or of any patch is rolled out to the running members (:mod:`arges.metal.rollout`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from arges.api.base import (
    Condition,
    JSONPatchOperation,
    LocalObjectReference,
    Model,
    Object,
    Time,
)
from arges.api.binding import Role

CLUSTER_GROUP = "cluster.arges.dev"
Phase = Literal["Pending", "Provisioning", "Running", "Scaling", "Updating", "Deleting", "Failed"]
MemberState = Literal["Allocated", "Booting", "ConfigDelivered", "Installed", "Ready"]
RolloutState = Literal["UpToDate", "Pending", "InProgress", "Failed"]
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
    max_unavailable: int = Field(
        default=1,
        ge=1,
        description="How many of the pool's workers a roll-out takes down at once (an upgrade "
        "or a config change that reboots); members not healthy count against it.",
    )
    auto_replace: bool = Field(
        default=False,
        description="Release a worker whose Talos API stops answering for "
        "unhealthyAfterSeconds (it is wiped over the network) and bind a replacement.",
    )


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
    installer_image: str | None = Field(
        default=None,
        description="Talos installer image, tagged with its Talos version (default: "
        "ghcr.io/siderolabs/installer:<talosVersion> when talosVersion names a release such as "
        "v1.11.6, else the release of that Talos line). Changing it upgrades the members, one "
        "at a time, through Talos' Upgrade call.",
    )
    paused: bool = Field(
        default=False,
        description="Stop roll-outs (upgrades and config changes) where they are; scaling and "
        "provisioning go on.",
    )
    unhealthy_after_seconds: int = Field(
        default=300,
        ge=10,
        description="How long a member's Talos API may go unanswered (outside a roll-out step) "
        "before the member is MemberUnhealthy.",
    )
    rollout_timeout_seconds: int = Field(
        default=900,
        ge=30,
        description="How long one member may take to come back healthy from a roll-out step "
        "before the roll-out stops with that member failed.",
    )


class Member(Model):
    """One server of the cluster, as last observed."""

    server: str = Field(description="The Server (and ServerBinding) name.")
    role: Role
    pool: str
    state: MemberState
    talos_version: str | None = Field(
        default=None, description="The Talos version its Talos API last reported."
    )
    kubernetes_version: str | None = Field(
        default=None, description="The kubelet version of the machine config it runs."
    )
    rollout: RolloutState | None = Field(
        default=None, description="Where the member is in the current roll-out."
    )
    message: str | None = Field(
        default=None, description="What the roll-out does or waits for on this member."
    )
    last_seen: Time | None = Field(default=None, description="When its Talos API last answered.")


class TalosClusterStatus(Model):
    """Where the cluster is."""

    phase: Phase | None = None
    control_planes: str | None = Field(
        default=None, description="Ready over desired control planes, e.g. 1/3."
    )
    worker_count: str | None = Field(default=None, description="Ready over desired workers.")
    talos_version: str | None = Field(
        default=None, description="The Talos version the members are rolled out to."
    )
    kubernetes_version: str | None = Field(
        default=None, description="The Kubernetes version the members are rolled out to."
    )
    updated: str | None = Field(
        default=None, description="Members up to date over all members, e.g. 2/3."
    )
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
    allocates servers, renders and delivers their machine configs, bootstraps etcd, rolls
    version and config changes out to running members, and releases (resets and wipes)
    servers when the cluster shrinks or is deleted."""

    api_version: str = f"{CLUSTER_GROUP}/v1alpha1"
    kind: str = "TalosCluster"
    spec: TalosClusterSpec
    status: TalosClusterStatus = Field(default_factory=TalosClusterStatus)
