"""Name, label and object-metadata rules, worded as kube-apiserver words them.

The rules and messages follow ``k8s.io/apimachinery/pkg/util/validation`` and
``.../api/validation/objectmeta.go``, so a user sees the sentence they would see from a real
cluster. Every check returns a list of :class:`~arges.apiserver.errors.Cause`; an empty list
means valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arges.apiserver.errors import Cause
from arges.names import (
    TOTAL_ANNOTATION_SIZE_LIMIT,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    label_key_errors,
    label_value_errors,
    qualified_name_errors,
)


def invalid(field: str, value: Any, why: str) -> Cause:
    """A ``FieldValueInvalid`` cause in kube's ``Invalid value: "x": why`` wording."""
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return Cause(field, f"Invalid value: {shown}: {why}")


def required(field: str, message: str = "Required value") -> Cause:
    """A ``FieldValueRequired`` cause."""
    return Cause(field, message, "FieldValueRequired")


def forbidden(field: str, why: str) -> Cause:
    """A ``FieldValueForbidden`` cause."""
    return Cause(field, f"Forbidden: {why}", "FieldValueForbidden")


def name_errors(name: str, *, label: bool) -> list[str]:
    """Reasons an object name is invalid: DNS-1123 label for namespaces, subdomain otherwise."""
    return dns1123_label_errors(name) if label else dns1123_subdomain_errors(name)


def object_meta_causes(
    meta: Mapping[str, Any], *, namespaced: bool, name_is_label: bool = False
) -> list[Cause]:
    """Validate ``metadata`` the way ``ValidateObjectMeta`` does.

    Checks name (or generateName), namespace presence by scope, labels, annotations (size),
    finalizers and ownerReferences.
    """
    causes: list[Cause] = []
    name = meta.get("name") or ""
    if not name:
        causes.append(required("metadata.name", "name or generateName is required"))
    else:
        for why in name_errors(name, label=name_is_label):
            causes.append(invalid("metadata.name", name, why))
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            causes.append(required("metadata.namespace"))
        else:
            for why in dns1123_label_errors(namespace):
                causes.append(invalid("metadata.namespace", namespace, why))
    elif namespace:
        causes.append(forbidden("metadata.namespace", "not allowed on this type"))
    causes += labels_causes(meta.get("labels"), "metadata.labels")
    causes += annotations_causes(meta.get("annotations"))
    for i, fin in enumerate(meta.get("finalizers") or []):
        for why in qualified_name_errors(str(fin)):
            causes.append(invalid(f"metadata.finalizers[{i}]", fin, why))
    controllers = 0
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        field = f"metadata.ownerReferences[{i}]"
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                causes.append(required(f"{field}.{key}", f"{key} must not be empty"))
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        causes.append(
            invalid(
                "metadata.ownerReferences",
                meta.get("ownerReferences"),
                "Only one reference can have Controller set to true",
            )
        )
    return causes


def labels_causes(labels: Any, field: str) -> list[Cause]:
    """Validate a label map: keys are qualified names, values label values."""
    causes: list[Cause] = []
    for key, value in (labels or {}).items():
        for why in label_key_errors(key):
            causes.append(invalid(field, key, why))
        for why in label_value_errors(str(value)):
            causes.append(invalid(field, value, why))
    return causes


def annotations_causes(annotations: Any) -> list[Cause]:
    """Validate annotations: keys are qualified names, the total size at most 256 KiB."""
    causes: list[Cause] = []
    total = 0
    for key, value in (annotations or {}).items():
        for why in qualified_name_errors(key.lower()):
            causes.append(invalid("metadata.annotations", key, why))
        total += len(key) + len(str(value))
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(
            Cause(
                "metadata.annotations",
                f"Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes",
                "FieldValueTooLong",
            )
        )
    return causes
