"""Lease (coordination.k8s.io/v1): the object leader election holds and renews."""

from __future__ import annotations

from typing import Any

from arges.apiserver.builtin.strategy import BuiltinStrategy
from arges.apiserver.metaschema import INT32, STRING, desc, root_schema
from arges.apiserver.resources import PrinterColumn, ResourceType, Version
from arges.apiserver.schema import Schema
from arges.apiserver.tables import age_column, name_column

MICRO_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}

LEASE_SCHEMA = root_schema(
    "Lease defines a lease concept, used for leader election.",
    spec={
        "type": "object",
        "description": "Specification of the Lease.",
        "properties": {
            "holderIdentity": desc(STRING, "The identity of the holder of a current lease."),
            "leaseDurationSeconds": desc(
                INT32, "Duration that candidates for a lease need to wait to force acquire it."
            ),
            "acquireTime": desc(MICRO_TIME, "When the current lease was acquired."),
            "renewTime": desc(MICRO_TIME, "When the current holder last updated the lease."),
            "leaseTransitions": desc(
                INT32, "The number of transitions of a lease between holders."
            ),
            "strategy": STRING,
            "preferredHolder": STRING,
        },
    },
)


def lease_type() -> ResourceType:
    """The Lease resource type."""
    return ResourceType(
        group="coordination.k8s.io",
        plural="leases",
        singular="lease",
        kind="Lease",
        namespaced=True,
        strategy=BuiltinStrategy(),
        versions=(
            Version(
                "v1",
                Schema.compile(LEASE_SCHEMA),
                storage=True,
                columns=(
                    name_column(),
                    PrinterColumn(
                        "Holder",
                        "string",
                        description="The holder of the lease",
                        compute=lambda o: (o.get("spec") or {}).get("holderIdentity", ""),
                    ),
                    age_column(),
                ),
            ),
        ),
    )
