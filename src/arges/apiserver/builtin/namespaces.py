"""Namespace (core/v1): a scope for names, with server-owned status and finalizers.

``pkg/registry/core/namespace/strategy.go``: a new namespace is Active with the
``kubernetes`` finalizer, spec and status cannot be changed by an update, and the
``kubernetes.io/metadata.name`` label always carries its name.
"""

from __future__ import annotations

from typing import Any

from arges.apiserver.builtin.strategy import BuiltinStrategy
from arges.apiserver.metaschema import STRING, TIME, desc, root_schema
from arges.apiserver.resources import PrinterColumn, ResourceType, Version
from arges.apiserver.schema import Schema
from arges.apiserver.tables import age_column, name_column


class NamespaceStrategy(BuiltinStrategy):
    """``pkg/registry/core/namespace/strategy.go``: status and spec.finalizers are server-owned."""

    name_is_label = True
    field_labels = frozenset({"status.phase"})
    return_deleted_object = True

    def prepare_for_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        obj["status"] = {"phase": "Active"}
        spec = obj.setdefault("spec", {})
        finalizers = spec.get("finalizers") or []
        if "kubernetes" not in finalizers:
            spec["finalizers"] = [*finalizers, "kubernetes"]
        _name_label(obj)

    def prepare_for_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> None:
        new["status"] = old.get("status", {})
        new["spec"] = old.get("spec", {})
        _name_label(new)

    def fields(self, obj: dict[str, Any]) -> dict[str, str]:
        return {"status.phase": (obj.get("status") or {}).get("phase", "")}


def _name_label(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")


NAMESPACE_SCHEMA = root_schema(
    "Namespace provides a scope for Names.",
    spec={
        "type": "object",
        "description": "Spec defines the behavior of the Namespace.",
        "properties": {
            "finalizers": desc(
                {"type": "array", "items": STRING},
                "An opaque list of values that must be empty to permanently remove the object.",
            )
        },
    },
    status={
        "type": "object",
        "description": "Status describes the current status of a Namespace.",
        "properties": {
            "phase": desc(STRING, "Phase is the current lifecycle phase: Active or Terminating."),
            "conditions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": STRING,
                        "status": STRING,
                        "lastTransitionTime": TIME,
                        "reason": STRING,
                        "message": STRING,
                    },
                },
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
    },
)


def namespace_type() -> ResourceType:
    """The Namespace resource type."""
    return ResourceType(
        group="",
        plural="namespaces",
        singular="namespace",
        kind="Namespace",
        namespaced=False,
        short_names=("ns",),
        strategy=NamespaceStrategy(),
        versions=(
            Version(
                "v1",
                Schema.compile(NAMESPACE_SCHEMA),
                storage=True,
                status=True,
                columns=(
                    name_column(),
                    PrinterColumn(
                        "Status",
                        "string",
                        description="The status of the namespace",
                        compute=lambda o: (o.get("status") or {}).get("phase", ""),
                    ),
                    age_column(),
                ),
            ),
        ),
    )
