"""The Cluster API infrastructure provider's kinds (``infrastructure.cluster.x-k8s.io/v1alpha3``).

MetalCluster, MetalMachine and MetalMachineTemplate keep Sidero Metal's (CAPS') field names, so
Sidero's cluster templates and objects apply unchanged, and add what the current Cluster API
contract reads (the Cluster API book, "Contract rules for InfraCluster" and "Contract rules for
InfraMachine", contract v1beta2 with v1beta1 still honoured):

- provisioned: ``status.initialization.provisioned`` (v1beta2) and ``status.ready`` (v1beta1);
- ``spec.providerID`` (it must equal the workload Node's ``spec.providerID``);
- ``status.addresses``, Cluster API ``MachineAddress`` entries;
- ``status.conditions`` as ``metav1.Condition`` (v1beta2), ``Ready`` and ``Paused`` among them;
- ``status.failureReason``/``failureMessage`` (v1beta1 terminal failures; Arges never sets
  them, as Sidero never did: every failure here is retried and shown as a condition).

A MetalMachine's server comes from ``spec.serverRef`` (a Server, by name: pinned) or from
``spec.serverClassRef`` (Arges' ServerClass of that name, whether the reference's apiVersion
says ``metal.arges.dev`` or Sidero's ``metal.sidero.dev``); Server, ServerClass and Environment
stay Arges' own kinds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from arges.api.base import Condition, Model, Object

INFRASTRUCTURE_GROUP = "infrastructure.cluster.x-k8s.io"
INFRASTRUCTURE_VERSION = "v1alpha3"


class APIEndpoint(Model):
    """Where a cluster's Kubernetes API is reached (Cluster API ``APIEndpoint``)."""

    host: str = Field(description="The hostname or IP address of the endpoint.")
    port: int = Field(ge=0, le=65535, description="The port of the endpoint.")


class Reference(Model):
    """``core/v1 ObjectReference`` as Sidero's kinds carry it (every field optional)."""

    api_version: str | None = Field(default=None, description="API version of the referent.")
    kind: str | None = Field(default=None, description="Kind of the referent.")
    name: str | None = Field(default=None, description="Name of the referent.")
    namespace: str | None = Field(default=None, description="Namespace of the referent.")
    uid: str | None = Field(default=None, description="UID of the referent.")
    resource_version: str | None = Field(
        default=None, description="Specific resourceVersion of the referent."
    )
    field_path: str | None = Field(default=None, description="A part of the referent.")


class Initialization(Model):
    """The v1beta2 contract's initialization status."""

    provisioned: bool | None = Field(
        default=None,
        description="True once the infrastructure is provisioned (Cluster API reads it).",
    )


AddressType = Literal["Hostname", "ExternalIP", "InternalIP", "ExternalDNS", "InternalDNS"]


class MachineAddress(Model):
    """One address of a machine (Cluster API ``MachineAddress``)."""

    type: AddressType = Field(description="Hostname, ExternalIP, InternalIP, ExternalDNS, ...")
    address: str = Field(description="The address.")


class MetalClusterSpec(Model):
    """What the infrastructure of one Cluster API cluster is."""

    control_plane_endpoint: APIEndpoint | None = Field(
        default=None,
        description="Endpoint of the control plane (a VIP, a load balancer or DNS name the "
        "user provides); copied from the Cluster when left empty.",
    )


class InfrastructureStatus(Model):
    """Provisioned state as both contract versions read it, and conditions."""

    ready: bool = Field(default=False, description="Provisioned (contract v1beta1).")
    initialization: Initialization | None = Field(
        default=None, description="Provisioned (contract v1beta2)."
    )
    failure_reason: str | None = Field(default=None, description="Terminal failure (v1beta1).")
    failure_message: str | None = Field(default=None, description="Terminal failure (v1beta1).")
    conditions: list[Condition] | None = Field(default=None, description="Current state.")
    observed_generation: int | None = Field(
        default=None, description="The generation the status was computed from."
    )


class MetalCluster(Object):
    """The infrastructure of a Cluster API cluster on Arges' servers: its control-plane
    endpoint. Provisioned once owned by a Cluster and its endpoint is known."""

    api_version: str = f"{INFRASTRUCTURE_GROUP}/{INFRASTRUCTURE_VERSION}"
    kind: str = "MetalCluster"
    spec: MetalClusterSpec = Field(default_factory=MetalClusterSpec)
    status: InfrastructureStatus = Field(default_factory=InfrastructureStatus)


class MetalMachineSpec(Model):
    """Which server a Cluster API machine runs on."""

    provider_id: str | None = Field(
        default=None,
        alias="providerID",
        description="The machine's provider ID (arges://<server uuid>), as its Node carries it.",
    )
    server_class_ref: Reference | None = Field(
        default=None, description="ServerClass (by name) to allocate a server from."
    )
    server_ref: Reference | None = Field(
        default=None,
        description="The Server (by name) this machine runs on: set by Arges after "
        "allocation, or by the user to pin one.",
    )


class MetalMachineStatus(InfrastructureStatus):
    """Provisioned state, addresses and conditions of a machine."""

    addresses: list[MachineAddress] | None = Field(
        default=None, description="The server's addresses and hostname."
    )


class MetalMachine(Object):
    """One Cluster API machine on one of Arges' servers (through a ServerBinding)."""

    api_version: str = f"{INFRASTRUCTURE_GROUP}/{INFRASTRUCTURE_VERSION}"
    kind: str = "MetalMachine"
    spec: MetalMachineSpec = Field(default_factory=MetalMachineSpec)
    status: MetalMachineStatus = Field(default_factory=MetalMachineStatus)


class MetalMachineTemplateResource(Model):
    """The MetalMachine a template stamps out."""

    metadata: dict[str, Any] | None = Field(
        default=None, description="Labels and annotations of the machines made from it."
    )
    spec: MetalMachineSpec = Field(description="Spec of the machines made from it.")


class MetalMachineTemplateSpec(Model):
    """The template."""

    template: MetalMachineTemplateResource = Field(description="The MetalMachine to make.")


class MetalMachineTemplate(Object):
    """What MachineDeployments and control planes clone MetalMachines from."""

    api_version: str = f"{INFRASTRUCTURE_GROUP}/{INFRASTRUCTURE_VERSION}"
    kind: str = "MetalMachineTemplate"
    spec: MetalMachineTemplateSpec
