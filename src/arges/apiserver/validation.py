"""Name, label and object-metadata rules, worded as kube-apiserver words them.

The rules and messages follow ``k8s.io/apimachinery/pkg/util/validation`` and
``.../api/validation/objectmeta.go``, so a user sees the sentence they would see from a real
cluster. Every check returns a list of :class:`~arges.apiserver.errors.Cause`; an empty list
means valid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from arges.apiserver.errors import Cause

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _QUALIFIED_NAME + ")?"

_LABEL_RE = re.compile(f"^{_DNS1123_LABEL}$")
_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN}$")
_QUALIFIED_RE = re.compile(f"^{_QUALIFIED_NAME}$")
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE}$")

_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    f"used for validation is '{_DNS1123_LABEL}')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    f"for validation is '{_DNS1123_SUBDOMAIN}')"
)
_QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    f"validation is '{_QUALIFIED_NAME}')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
)

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
"""Bytes, summed over keys and values, as kube-apiserver enforces."""


def dns1123_label_errors(value: str) -> list[str]:
    """Reasons ``value`` is not a DNS-1123 label (RFC 1123: at most 63 characters)."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_RE.match(value):
        errs.append(_LABEL_MSG)
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Reasons ``value`` is not a DNS-1123 subdomain (at most 253 characters)."""
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.match(value):
        errs.append(_SUBDOMAIN_MSG)
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """Reasons ``value`` is not a qualified name (``[prefix/]name``), as label keys must be."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errs = [f"prefix part {e}" for e in dns1123_subdomain_errors(prefix)]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character, with an optional DNS subdomain prefix "
            "and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED_RE.match(name):
        errs.append(_QUALIFIED_MSG)
    return errs


def label_key_errors(key: str) -> list[str]:
    """Reasons ``key`` is not a valid label key."""
    return qualified_name_errors(key)


def label_value_errors(value: str) -> list[str]:
    """Reasons ``value`` is not a valid label value (at most 63 characters)."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_LABEL_VALUE_MSG)
    return errs


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
