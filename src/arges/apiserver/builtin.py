"""Built-in kinds: Namespace, Secret, ConfigMap, Event (core/v1) and Lease (coordination/v1).

Each kind is a :class:`~arges.apiserver.resources.ResourceType` with a structural schema
(which does for pruning, validation, ``kubectl explain`` and OpenAPI what Go structs do in
kube-apiserver), its printer columns (kube's ``pkg/printers/internalversion``), and a
:class:`~arges.apiserver.resources.Strategy` for the rules in ``pkg/registry/core/*/strategy.go``.
The CustomResourceDefinition kind lives in :mod:`arges.apiserver.crd`.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from arges.apiserver.errors import Cause
from arges.apiserver.patch import OBJECT_META_PATCH
from arges.apiserver.resources import PrinterColumn, ResourceType, Strategy, Version
from arges.apiserver.schema import Schema
from arges.apiserver.tables import age_column, name_column
from arges.apiserver.validation import forbidden, invalid

STRING: dict[str, Any] = {"type": "string"}
INT32: dict[str, Any] = {"type": "integer", "format": "int32"}
BOOL: dict[str, Any] = {"type": "boolean"}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def _desc(schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {**schema, "description": text}


OWNER_REFERENCE: dict[str, Any] = {
    "type": "object",
    "description": "OwnerReference contains enough information to let you identify an owning "
    "object. An owning object must be in the same namespace as the dependent, or be "
    "cluster-scoped, so there is no namespace field.",
    "required": ["apiVersion", "kind", "name", "uid"],
    "properties": {
        "apiVersion": _desc(STRING, "API version of the referent."),
        "kind": _desc(STRING, "Kind of the referent."),
        "name": _desc(STRING, "Name of the referent."),
        "uid": _desc(STRING, "UID of the referent."),
        "controller": _desc(BOOL, "If true, this reference points to the managing controller."),
        "blockOwnerDeletion": _desc(
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
        "name": _desc(STRING, "Name must be unique within a namespace."),
        "generateName": _desc(
            STRING, "Optional prefix the server uses to generate a unique name if none is given."
        ),
        "namespace": _desc(
            STRING,
            "Namespace defines the space within which each name must be "
            "unique. Empty for cluster-scoped objects.",
        ),
        "uid": _desc(STRING, "UID is the unique in time and space value for this object."),
        "resourceVersion": _desc(
            STRING,
            "An opaque value that represents the internal version of this object, used for "
            "optimistic concurrency, change detection, and the watch operation.",
        ),
        "generation": _desc(
            {"type": "integer", "format": "int64"},
            "A sequence number representing a specific generation of the desired state.",
        ),
        "creationTimestamp": _desc(TIME, "When this object was created (RFC 3339, UTC)."),
        "deletionTimestamp": _desc(TIME, "When this object was requested to be deleted."),
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "labels": _desc(STRING_MAP, "Map of string keys and values to organize and select."),
        "annotations": _desc(STRING_MAP, "Unstructured key value map for arbitrary metadata."),
        "ownerReferences": {
            "type": "array",
            "items": OWNER_REFERENCE,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"],
        },
        "finalizers": _desc(
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
            "apiVersion": _desc(STRING, "APIVersion defines the versioned schema of this object."),
            "kind": _desc(STRING, "Kind is a string value representing the REST resource."),
            "metadata": OBJECT_META,
            **properties,
        },
    }


class _BuiltinStrategy(Strategy):
    generation = False
    strategic = OBJECT_META_PATCH
    unconditional_update = True

    def prepare_for_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        return None

    def prepare_for_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> None:
        return None


# Namespace


class NamespaceStrategy(_BuiltinStrategy):
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
            "finalizers": _desc(
                {"type": "array", "items": STRING},
                "An opaque list of values that must be empty to permanently remove the object.",
            )
        },
    },
    status={
        "type": "object",
        "description": "Status describes the current status of a Namespace.",
        "properties": {
            "phase": _desc(STRING, "Phase is the current lifecycle phase: Active or Terminating."),
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

# Secret and ConfigMap

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_SECRET_BYTES = 1024 * 1024


def _key_causes(field: str, keys: Any) -> list[Cause]:
    causes = []
    for key in keys or {}:
        if not _CONFIG_KEY.match(key) or len(key) > 253:
            causes.append(
                invalid(
                    f"{field}[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                    "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                    "is '[-._a-zA-Z0-9]+')",
                )
            )
    return causes


def _immutable_causes(
    new: dict[str, Any], old: dict[str, Any], keys: tuple[str, ...]
) -> list[Cause]:
    if not old.get("immutable"):
        return []
    causes = []
    if not new.get("immutable"):
        causes.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for key in keys:
        if (new.get(key) or {}) != (old.get(key) or {}):
            causes.append(forbidden(key, "field is immutable when `immutable` is set"))
    return causes


class SecretStrategy(_BuiltinStrategy):
    """``pkg/registry/core/secret/strategy.go``; ``stringData`` is folded into ``data``."""

    field_labels = frozenset({"type"})

    def prepare_for_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        _fold_string_data(obj)
        obj.setdefault("type", "Opaque")

    def prepare_for_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> None:
        _fold_string_data(new)
        new.setdefault("type", old.get("type", "Opaque"))

    def validate(self, rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
        causes = _key_causes("data", obj.get("data"))
        total = sum(len(base64.b64decode(v or "")) for v in (obj.get("data") or {}).values())
        if total > MAX_SECRET_BYTES:
            causes.append(
                Cause(
                    "data",
                    f"Too long: must have at most {MAX_SECRET_BYTES} bytes",
                    "FieldValueTooLong",
                )
            )
        return causes

    def validate_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> list[Cause]:
        causes = _immutable_causes(new, old, ("data",))
        if new.get("type") != old.get("type"):
            causes.append(invalid("type", new.get("type"), "field is immutable"))
        return causes

    def fields(self, obj: dict[str, Any]) -> dict[str, str]:
        return {"type": obj.get("type", "")}


_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def base64_error_offset(text: str) -> int | None:
    """Where Go's ``base64.StdEncoding`` gives up on ``text`` (its ``CorruptInputError``
    offset), or None when it decodes. CR and LF are skipped but counted, as in Go."""
    src = text.encode()
    n = len(src)
    si = 0
    while True:
        j = 0
        while j < 4:
            if si == n:
                return None if j == 0 else si - j
            c = src[si]
            si += 1
            if c in (10, 13):
                continue
            if c in _B64:
                j += 1
                continue
            if c != ord("=") or j < 2:
                return si - 1
            if j == 2:
                while si < n and src[si] in (10, 13):
                    si += 1
                if si == n:
                    return n
                if src[si] != ord("="):
                    return si - 1
                si += 1
            while si < n and src[si] in (10, 13):
                si += 1
            return si if si < n else None


def _fold_string_data(obj: dict[str, Any]) -> None:
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


SECRET_SCHEMA = root_schema(
    "Secret holds secret data of a certain type. The total bytes of the values in the Data "
    "field must be less than 1 MiB.",
    data=_desc(
        {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "Data contains the secret data; values are base64-encoded.",
    ),
    stringData=_desc(
        STRING_MAP,
        "stringData allows specifying non-binary secret data in string form. It is a write-only "
        "input field merged into the data field on write.",
    ),
    type=_desc(STRING, "Used to facilitate programmatic handling of secret data."),
    immutable=_desc(BOOL, "If true, the data stored in the Secret cannot be updated."),
)


class ConfigMapStrategy(_BuiltinStrategy):
    """``pkg/registry/core/configmap/strategy.go``."""

    def validate(self, rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
        causes = _key_causes("data", obj.get("data")) + _key_causes(
            "binaryData", obj.get("binaryData")
        )
        for key in set(obj.get("data") or {}) & set(obj.get("binaryData") or {}):
            causes.append(invalid("data", key, "duplicate of key present in binaryData"))
        return causes

    def validate_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> list[Cause]:
        return _immutable_causes(new, old, ("data", "binaryData"))


CONFIGMAP_SCHEMA = root_schema(
    "ConfigMap holds configuration data for pods to consume.",
    data=_desc(STRING_MAP, "Data contains the configuration data (UTF-8 values)."),
    binaryData=_desc(
        {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "BinaryData contains the binary data (base64-encoded values).",
    ),
    immutable=_desc(BOOL, "If true, the data stored in the ConfigMap cannot be updated."),
)

# Event

OBJECT_REFERENCE: dict[str, Any] = {
    "type": "object",
    "description": "ObjectReference contains enough information to let you inspect or modify "
    "the referred object.",
    "properties": {
        "apiVersion": STRING,
        "kind": STRING,
        "name": STRING,
        "namespace": STRING,
        "uid": STRING,
        "resourceVersion": STRING,
        "fieldPath": STRING,
    },
}

_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


class EventStrategy(_BuiltinStrategy):
    """``pkg/registry/core/event/strategy.go`` and ``ValidateEventCreate``."""

    field_labels = frozenset(_EVENT_FIELDS)

    def validate(self, rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
        ref = obj.get("involvedObject") or {}
        namespace = obj["metadata"].get("namespace", "")
        ref_ns = ref.get("namespace") or ""
        if ref_ns and ref_ns != namespace:
            return [invalid("involvedObject.namespace", ref_ns, "does not match event.namespace")]
        if not ref_ns and namespace not in ("default", ""):
            return [
                invalid(
                    "involvedObject.namespace",
                    ref_ns,
                    "does not match event.namespace (events about cluster-scoped objects "
                    "belong in namespace default)",
                )
            ]
        return []

    def fields(self, obj: dict[str, Any]) -> dict[str, str]:
        ref = obj.get("involvedObject") or {}
        out = {f"involvedObject.{k}": str(ref.get(k, "")) for k in OBJECT_REFERENCE["properties"]}
        out["reason"] = obj.get("reason", "")
        out["reportingComponent"] = obj.get("reportingComponent", "")
        out["source"] = (obj.get("source") or {}).get("component", "")
        out["type"] = obj.get("type", "")
        return out


EVENT_SCHEMA = root_schema(
    "Event is a report of an event somewhere in the cluster.",
    involvedObject=_desc(OBJECT_REFERENCE, "The object that this event is about."),
    reason=_desc(STRING, "A short, machine understandable string for the transition."),
    message=_desc(STRING, "A human-readable description of the status of this operation."),
    source={
        "type": "object",
        "properties": {"component": STRING, "host": STRING},
        "description": "The component reporting this event.",
    },
    firstTimestamp=TIME,
    lastTimestamp=TIME,
    count=INT32,
    type=_desc(STRING, "Type of this event (Normal, Warning)."),
    eventTime={**TIME, "nullable": True, "format": "date-time"},
    series={
        "type": "object",
        "properties": {"count": INT32, "lastObservedTime": TIME},
    },
    action=STRING,
    related=OBJECT_REFERENCE,
    reportingComponent=STRING,
    reportingInstance=STRING,
)
EVENT_SCHEMA["required"] = ["involvedObject"]


def _event_last_seen(obj: dict[str, Any]) -> Any:
    series = obj.get("series") or {}
    return (
        series.get("lastObservedTime")
        or obj.get("lastTimestamp")
        or obj.get("eventTime")
        or obj.get("firstTimestamp")
        or obj["metadata"].get("creationTimestamp")
    )


def _event_object(obj: dict[str, Any]) -> str:
    ref = obj.get("involvedObject") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _event_source(obj: dict[str, Any]) -> str:
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingComponent", "")
    host = source.get("host")
    return f"{component}, {host}" if host else component


EVENT_COLUMNS = (
    PrinterColumn("Last Seen", "date", compute=_event_last_seen),
    PrinterColumn("Type", "string", compute=lambda o: o.get("type", "")),
    PrinterColumn("Reason", "string", compute=lambda o: o.get("reason", "")),
    PrinterColumn("Object", "string", compute=_event_object),
    PrinterColumn(
        "Subobject",
        "string",
        priority=1,
        compute=lambda o: (o.get("involvedObject") or {}).get("fieldPath", ""),
    ),
    PrinterColumn("Source", "string", priority=1, compute=_event_source),
    PrinterColumn("Message", "string", compute=lambda o: o.get("message", "")),
    PrinterColumn(
        "First Seen",
        "date",
        priority=1,
        compute=lambda o: o.get("firstTimestamp") or o.get("eventTime"),
    ),
    PrinterColumn("Count", "integer", priority=1, compute=lambda o: o.get("count", 1)),
    PrinterColumn("Name", "string", priority=1, compute=lambda o: o["metadata"]["name"]),
)

# Lease

MICRO_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}

LEASE_SCHEMA = root_schema(
    "Lease defines a lease concept, used for leader election.",
    spec={
        "type": "object",
        "description": "Specification of the Lease.",
        "properties": {
            "holderIdentity": _desc(STRING, "The identity of the holder of a current lease."),
            "leaseDurationSeconds": _desc(
                INT32, "Duration that candidates for a lease need to wait to force acquire it."
            ),
            "acquireTime": _desc(MICRO_TIME, "When the current lease was acquired."),
            "renewTime": _desc(MICRO_TIME, "When the current holder last updated the lease."),
            "leaseTransitions": _desc(
                INT32, "The number of transitions of a lease between holders."
            ),
            "strategy": STRING,
            "preferredHolder": STRING,
        },
    },
)


def _schema(raw: dict[str, Any]) -> Schema:
    return Schema.compile(raw)


def builtin_types() -> list[ResourceType]:
    """The built-in kinds, except CustomResourceDefinition (see :mod:`~arges.apiserver.crd`)."""
    return [
        ResourceType(
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
                    _schema(NAMESPACE_SCHEMA),
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
        ),
        ResourceType(
            group="",
            plural="secrets",
            singular="secret",
            kind="Secret",
            namespaced=True,
            strategy=SecretStrategy(),
            versions=(
                Version(
                    "v1",
                    _schema(SECRET_SCHEMA),
                    storage=True,
                    columns=(
                        name_column(),
                        PrinterColumn(
                            "Type",
                            "string",
                            description="The type of the secret",
                            compute=lambda o: o.get("type", ""),
                        ),
                        PrinterColumn(
                            "Data",
                            "string",
                            description="The number of entries in the secret",
                            compute=lambda o: len(o.get("data") or {}),
                        ),
                        age_column(),
                    ),
                ),
            ),
        ),
        ResourceType(
            group="",
            plural="configmaps",
            singular="configmap",
            kind="ConfigMap",
            namespaced=True,
            short_names=("cm",),
            strategy=ConfigMapStrategy(),
            versions=(
                Version(
                    "v1",
                    _schema(CONFIGMAP_SCHEMA),
                    storage=True,
                    columns=(
                        name_column(),
                        PrinterColumn(
                            "Data",
                            "string",
                            description="The number of entries in the config map",
                            compute=lambda o: (
                                len(o.get("data") or {}) + len(o.get("binaryData") or {})
                            ),
                        ),
                        age_column(),
                    ),
                ),
            ),
        ),
        ResourceType(
            group="",
            plural="events",
            singular="event",
            kind="Event",
            namespaced=True,
            short_names=("ev",),
            strategy=EventStrategy(),
            versions=(Version("v1", _schema(EVENT_SCHEMA), storage=True, columns=EVENT_COLUMNS),),
        ),
        ResourceType(
            group="coordination.k8s.io",
            plural="leases",
            singular="lease",
            kind="Lease",
            namespaced=True,
            strategy=_BuiltinStrategy(),
            versions=(
                Version(
                    "v1",
                    _schema(LEASE_SCHEMA),
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
        ),
    ]
