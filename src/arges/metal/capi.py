"""Cluster API infrastructure provider decisions: pure functions on plain JSON objects.

What the contract (the Cluster API book, "Contract rules for InfraCluster/InfraMachine")
asks of a MetalCluster or MetalMachine reconcile, in its order: an owner (the Cluster, or the
Machine), no pause, the Cluster's infrastructure provisioned, the Machine's bootstrap data;
then a server. :func:`cluster_gate` and :func:`machine_gate` say what the object still waits
for (None: nothing), and the rest turns a bound server into what Cluster API reads (provider
ID, addresses, role). Cluster and Machine may be read at v1beta1 or v1beta2: the fields used
here have the same JSON paths in both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from arges.api.binding import Role, releasing
from arges.api.infrastructure import INFRASTRUCTURE_GROUP, MachineAddress
from arges.api.server import Server

CAPI_GROUP = "cluster.x-k8s.io"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
CONTROL_PLANE_LABEL = "cluster.x-k8s.io/control-plane"
PAUSED_ANNOTATION = "cluster.x-k8s.io/paused"
MANAGED_BY_ANNOTATION = "cluster.x-k8s.io/managed-by"
CONSUMER_UID_LABEL = "metal.arges.dev/consumer-uid"
"""On a ServerBinding: the uid of the MetalMachine holding it, so a MetalMachine finds its
binding again after a restart between the allocation and recording ``spec.serverRef``."""
NODE_UUID_LABEL = "metal.arges.dev/uuid"
"""The node label the metadata service adds to a machine's config (Sidero's
``metal.sidero.dev/uuid``), naming the server the Node runs on."""
PROVIDER_ID_SCHEME = "arges://"
SERVER_CLASS_GROUPS = ("metal.arges.dev", "metal.sidero.dev")
"""API groups a ``serverClassRef`` may name: Arges' own, and Sidero's (for its templates)."""


@dataclass(frozen=True)
class Gate:
    """Why an object waits: a condition reason (UpperCamelCase) and a message."""

    reason: str
    message: str


def owner(obj: dict[str, Any], kind: str, group: str = CAPI_GROUP) -> dict[str, Any] | None:
    """The owner reference of ``kind`` in ``group`` (any version), if there is one."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        api_group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        if ref.get("kind") == kind and api_group == group:
            return dict(ref)
    return None


def paused(cluster: dict[str, Any] | None, obj: dict[str, Any]) -> bool:
    """Whether reconciling ``obj`` is paused: the Cluster's ``spec.paused``, or the
    ``cluster.x-k8s.io/paused`` annotation on the object (Cluster API ``IsPaused``)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if PAUSED_ANNOTATION in annotations:
        return True
    return bool(cluster is not None and (cluster.get("spec") or {}).get("paused"))


def externally_managed(obj: dict[str, Any]) -> bool:
    """Whether the object carries ``cluster.x-k8s.io/managed-by`` (someone else provisions
    it; the provider leaves it alone)."""
    return MANAGED_BY_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})


def infrastructure_ready(cluster: dict[str, Any]) -> bool:
    """Whether Cluster API has seen the cluster's infrastructure provisioned
    (``status.initialization.infrastructureProvisioned`` in v1beta2,
    ``status.infrastructureReady`` in v1beta1)."""
    status = cluster.get("status") or {}
    initialization = status.get("initialization") or {}
    return bool(
        initialization.get("infrastructureProvisioned") or status.get("infrastructureReady")
    )


def cluster_gate(metal_cluster: dict[str, Any], cluster: dict[str, Any] | None) -> Gate | None:
    """What a MetalCluster waits for before it is provisioned (None: nothing)."""
    if owner(metal_cluster, "Cluster") is None:
        return Gate("WaitingForClusterOwner", "no Cluster owns this MetalCluster yet")
    if cluster is None:
        return Gate("WaitingForCluster", "the owning Cluster does not exist")
    if endpoint(metal_cluster, cluster) is None:
        return Gate(
            "WaitingForControlPlaneEndpoint",
            "set spec.controlPlaneEndpoint here or on the Cluster",
        )
    return None


def endpoint(metal_cluster: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any] | None:
    """The control-plane endpoint: the MetalCluster's own, else the Cluster's."""
    for obj in (metal_cluster, cluster):
        found = (obj.get("spec") or {}).get("controlPlaneEndpoint") or {}
        if found.get("host"):
            return {"host": found["host"], "port": int(found.get("port") or 6443)}
    return None


def machine_gate(
    metal_machine: dict[str, Any],
    machine: dict[str, Any] | None,
    cluster: dict[str, Any] | None,
) -> Gate | None:
    """What a MetalMachine waits for before a server is bound to it (None: nothing), in the
    contract's order: a Machine owner, the Cluster, its infrastructure, the bootstrap data."""
    if owner(metal_machine, "Machine") is None:
        return Gate("WaitingForMachineOwner", "no Machine owns this MetalMachine yet")
    if machine is None:
        return Gate("WaitingForMachine", "the owning Machine does not exist")
    if cluster is None:
        return Gate("WaitingForCluster", f"Cluster {cluster_name(machine)!r} does not exist")
    if not infrastructure_ready(cluster):
        return Gate(
            "WaitingForClusterInfrastructure",
            "the Cluster's infrastructure is not provisioned yet",
        )
    if not data_secret_name(machine):
        return Gate(
            "WaitingForBootstrapData", "the Machine's bootstrap data secret is not created yet"
        )
    return None


def cluster_name(obj: dict[str, Any]) -> str:
    """The Cluster an object belongs to: its ``cluster.x-k8s.io/cluster-name`` label, else
    (a Machine) ``spec.clusterName``; empty when neither says."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get(CLUSTER_NAME_LABEL) or (obj.get("spec") or {}).get("clusterName") or "")


def data_secret_name(machine: dict[str, Any]) -> str | None:
    """``Machine.spec.bootstrap.dataSecretName``: where the bootstrap provider put the
    machine's config (key ``value``)."""
    bootstrap = (machine.get("spec") or {}).get("bootstrap") or {}
    name = bootstrap.get("dataSecretName")
    return str(name) if name else None


def role(machine: dict[str, Any]) -> Role:
    """controlplane for a Machine labelled ``cluster.x-k8s.io/control-plane``, else worker."""
    labels = (machine.get("metadata") or {}).get("labels") or {}
    return "controlplane" if CONTROL_PLANE_LABEL in labels else "worker"


def server_class_name(ref: dict[str, Any] | None) -> str | None:
    """The ServerClass a ``serverClassRef`` names (None when there is no reference).

    Raises:
        ValueError: the reference names another kind or API group, or no name.
    """
    if not ref:
        return None
    group = str(ref.get("apiVersion") or "").rpartition("/")[0]
    if ref.get("kind") not in (None, "", "ServerClass") or (
        group and group not in SERVER_CLASS_GROUPS
    ):
        raise ValueError(
            f"serverClassRef names {ref.get('apiVersion')} {ref.get('kind')}; it must be a "
            "ServerClass of metal.arges.dev (or Sidero's metal.sidero.dev)"
        )
    if not ref.get("name"):
        raise ValueError("serverClassRef has no name")
    return str(ref["name"])


def imported_binding(
    bindings: Iterable[dict[str, Any]], metal_machine: dict[str, Any]
) -> dict[str, Any] | None:
    """The ServerBinding ``arges import sidero`` left for this MetalMachine, if any: one naming
    it by namespace and name but without a uid, because the MetalMachine was not here yet when
    the import ran (``clusterctl move`` brings it later, under a new uid). A binding being
    deleted is not one: its server is already on its way back to the pool."""
    meta = metal_machine.get("metadata") or {}
    for binding in bindings:
        consumer = (binding.get("spec") or {}).get("consumerRef") or {}
        group = str(consumer.get("apiVersion") or "").rpartition("/")[0]
        if (
            consumer.get("kind") == "MetalMachine"
            and group == INFRASTRUCTURE_GROUP
            and not consumer.get("uid")
            and consumer.get("namespace") == meta.get("namespace")
            and consumer.get("name") == meta.get("name")
            and not releasing(binding)
        ):
            return binding
    return None


def provider_id(server: str) -> str:
    """The provider ID of a machine on ``server`` (its SMBIOS UUID)."""
    return f"{PROVIDER_ID_SCHEME}{server}"


def addresses(server: Server) -> list[MachineAddress]:
    """Cluster API machine addresses from the server's inventory: its addresses, then its
    hostname."""
    out = [MachineAddress(type=a.type, address=a.address) for a in server.status.addresses or []]
    if server.status.hostname and not any(a.type == "Hostname" for a in out):
        out.append(MachineAddress(type="Hostname", address=server.status.hostname))
    return out


def node_patch(server: str, provider: str) -> str:
    """A Talos strategic merge patch (YAML) that makes the kubelet register the Node with the
    machine's provider ID (``machine.kubelet.extraConfig.providerID``, a KubeletConfiguration
    field) and labels it with the server's UUID (as Sidero labelled it)."""
    return (
        "machine:\n"
        "  kubelet:\n"
        "    extraConfig:\n"
        f"      providerID: {provider}\n"
        "  nodeLabels:\n"
        f"    {NODE_UUID_LABEL}: {server}\n"
    )
