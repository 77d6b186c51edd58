"""The schemas of the ``meta/v1`` types every kind shares, and their building blocks.

``ObjectMeta`` and ``OwnerReference`` as structural schemas (what the Go structs of
``k8s.io/apimachinery/pkg/apis/meta/v1`` declare), the scalar schemas the built-in kinds are
made of, and :func:`root_schema` for a kind's top-level object. The built-in kinds
(:mod:`arges.apiserver.builtin`), CustomResourceDefinition (:mod:`~arges.apiserver.crd`), the
webhook configurations, managed fields and OpenAPI build on them.
"""

from __future__ import annotations

from typing import Any

STRING: dict[str, Any] = {"type": "string"}
INT32: dict[str, Any] = {"type": "integer", "format": "int32"}
BOOL: dict[str, Any] = {"type": "boolean"}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def desc(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """``schema`` with ``text`` as its description."""
    return {**schema, "description": text}


OWNER_REFERENCE: dict[str, Any] = {
    "type": "object",
    "description": "OwnerReference contains enough information to let you identify an owning "
    "object. An owning object must be in the same namespace as the dependent, or be "
    "cluster-scoped, so there is no namespace field.",
    "required": ["apiVersion", "kind", "name", "uid"],
    "properties": {
        "apiVersion": desc(STRING, "API version of the referent."),
        "kind": desc(STRING, "Kind of the referent."),
        "name": desc(STRING, "Name of the referent."),
        "uid": desc(STRING, "UID of the referent."),
        "controller": desc(BOOL, "If true, this reference points to the managing controller."),
        "blockOwnerDeletion": desc(
            BOOL,
            "If true, the owner cannot be deleted from the key-value store until this reference "
            "is removed (foreground deletion).",
        ),
    },
}

OBJECT_META: dict[str, Any] = {
    "type": "object",
    "description": "Standard object's metadata.",
    "properties": {
        "name": desc(STRING, "Name must be unique within a namespace."),
        "generateName": desc(
            STRING, "Optional prefix the server uses to generate a unique name if none is given."
        ),
        "namespace": desc(
            STRING,
            "Namespace defines the space within which each name must be "
            "unique. Empty for cluster-scoped objects.",
        ),
        "uid": desc(STRING, "UID is the unique in time and space value for this object."),
        "resourceVersion": desc(
            STRING,
            "An opaque value that represents the internal version of this object, used for "
            "optimistic concurrency, change detection, and the watch operation.",
        ),
        "generation": desc(
            {"type": "integer", "format": "int64"},
            "A sequence number representing a specific generation of the desired state.",
        ),
        "creationTimestamp": desc(TIME, "When this object was created (RFC 3339, UTC)."),
        "deletionTimestamp": desc(TIME, "When this object was requested to be deleted."),
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "labels": desc(STRING_MAP, "Map of string keys and values to organize and select."),
        "annotations": desc(STRING_MAP, "Unstructured key value map for arbitrary metadata."),
        "ownerReferences": {
            "type": "array",
            "items": OWNER_REFERENCE,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"],
        },
        "finalizers": desc(
            {"type": "array", "items": STRING, "x-kubernetes-list-type": "set"},
            "Must be empty before the object is deleted from the registry.",
        ),
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "x-kubernetes-list-type": "atomic",
        },
    },
}


def root_schema(description: str, **properties: Any) -> dict[str, Any]:
    """A top-level object schema with apiVersion, kind and metadata plus ``properties``."""
    return {
        "type": "object",
        "description": description,
        "properties": {
            "apiVersion": desc(STRING, "APIVersion defines the versioned schema of this object."),
            "kind": desc(STRING, "Kind is a string value representing the REST resource."),
            "metadata": OBJECT_META,
            **properties,
        },
    }
