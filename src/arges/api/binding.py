"""ServerBinding: one Server allocated to one consumer (``metal.arges.dev/v1alpha1``).

The binding is named after the server, so creating it is the allocation lock: two consumers
racing for a server both try to create the same name and exactly one succeeds (409
AlreadyExists for the other), whether the race is inside one controller or between two
instances. Native TalosClusters and Cluster API MetalMachines both end in a binding;
everything after it (boot, config delivery, release, wipe) is shared.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from arges.api.base import (
    Condition,
    LocalObjectReference,
    Model,
    Object,
    ObjectReference,
    SecretReference,
)

Role = Literal["controlplane", "worker"]

CONFIG_DELIVERED = "ConfigDelivered"
INSTALLED = "Installed"
CONFIG_KEY = "config"
"""The key of the machine config in the Secret a binding's ``configSecretRef`` names."""
RELEASE_FINALIZER = "metal.arges.dev/server-release"
"""Every binding is created with this finalizer; the Server controller removes it only once
the server is recorded as released (not clean, not in use). A binding deleted at any moment,
even before anything saw it, therefore always sends its server through a wipe."""


def releasing(binding: dict[str, Any] | None) -> bool:
    """Whether a binding (as the API returns it) is being deleted: its server is on its way
    back to the pool and is bound to nothing any more."""
    return bool(binding is not None and (binding.get("metadata") or {}).get("deletionTimestamp"))


class ServerBindingSpec(Model):
    """Who holds which server, and with what machine config."""

    server_ref: LocalObjectReference = Field(description="The bound Server (same name).")
    consumer_ref: ObjectReference = Field(description="Whatever claimed the server.")
    server_class_ref: LocalObjectReference | None = Field(
        default=None, description="The ServerClass the server was allocated from, if any."
    )
    config_secret_ref: SecretReference | None = Field(
        default=None, description="Secret holding this machine's config (key `config`)."
    )
    role: Role | None = Field(default=None, description="Talos machine type: controlplane, worker.")


class ServerBindingStatus(Model):
    """Progress of the bound server: ConfigDelivered, Installed."""

    conditions: list[Condition] | None = None


class ServerBinding(Object):
    """ServerBinding allocates one Server (same name) to one consumer, with the Secret holding
    its machine config. Creating it is the lock that prevents double allocation."""

    api_version: str = "metal.arges.dev/v1alpha1"
    kind: str = "ServerBinding"
    spec: ServerBindingSpec
    status: ServerBindingStatus = Field(default_factory=ServerBindingStatus)
