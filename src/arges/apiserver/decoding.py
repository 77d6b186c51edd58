"""The type checks kube-apiserver gets from decoding a body into Go structs.

kube-apiserver decodes a built-in kind's body into its Go struct and a custom resource's
``metadata`` into ``metav1.ObjectMeta`` (apiextensions' ``GetObjectMetaWithOptions``) before
anything else looks at it, so a JSON value of the wrong type is a decoding error: 400
``<Kind> in version "<v>" cannot be handled as a <Kind>: json: cannot unmarshal <value> into
Go struct field <Struct>.<path> of type <type>`` (Go's ``encoding/json.UnmarshalTypeError``:
the first one in document order; a JSON null is no error, it leaves the zero value).

:func:`decode_error` finds that error for a decoded body. ObjectMeta follows its Go struct
exactly; the rest of a built-in kind follows its structural schema, with the Go names of the
nested structs and named string types of Namespace, Event and Lease from ``k8s.io/api``
(:data:`GO_NAMES`; the API server's own kinds, CustomResourceDefinition and the webhook
configurations, name theirs ``<Kind><Field>``), and timestamps decoded as ``metav1.Time`` and
``MicroTime`` decode them (a string first, outside the struct's context).
"""

from __future__ import annotations

from typing import Any

from arges.errors import ArgesError

_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)

_OWNER_REFERENCE: dict[str, str] = {
    "apiVersion": "string",
    "kind": "string",
    "name": "string",
    "uid": "string",
    "controller": "bool",
    "blockOwnerDeletion": "bool",
}
_MANAGED_FIELDS_ENTRY: dict[str, str] = {
    "manager": "string",
    "operation": "v1.ManagedFieldsOperationType",
    "apiVersion": "string",
    "time": "time",
    "fieldsType": "string",
    "fieldsV1": "any",
    "subresource": "string",
}
_OBJECT_META: dict[str, Any] = {
    "name": "string",
    "generateName": "string",
    "namespace": "string",
    "selfLink": "string",
    "uid": "types.UID",
    "resourceVersion": "string",
    "generation": "int64",
    "creationTimestamp": "time",
    "deletionTimestamp": "time",
    "deletionGracePeriodSeconds": "int64",
    "labels": "map[string]string",
    "annotations": "map[string]string",
    "ownerReferences": ("[]v1.OwnerReference", "OwnerReference", _OWNER_REFERENCE),
    "finalizers": "[]string",
    "managedFields": ("[]v1.ManagedFieldsEntry", "ManagedFieldsEntry", _MANAGED_FIELDS_ENTRY),
}
"""``metav1.ObjectMeta``'s JSON fields and Go types; a tuple is a list of structs: its Go
type, the element struct's name and fields."""


GO_NAMES: dict[tuple[str, str], str] = {
    # k8s.io/api/core/v1: Namespace
    ("Namespace", "spec"): "NamespaceSpec",
    ("Namespace", "spec.finalizers"): "[]v1.FinalizerName",
    ("Namespace", "status"): "NamespaceStatus",
    ("Namespace", "status.phase"): "v1.NamespacePhase",
    ("Namespace", "status.conditions"): "NamespaceCondition",
    ("Namespace", "status.conditions.type"): "v1.NamespaceConditionType",
    ("Namespace", "status.conditions.status"): "v1.ConditionStatus",
    # k8s.io/api/core/v1: Event
    ("Event", "involvedObject"): "ObjectReference",
    ("Event", "involvedObject.uid"): "types.UID",
    ("Event", "related"): "ObjectReference",
    ("Event", "related.uid"): "types.UID",
    ("Event", "source"): "EventSource",
    ("Event", "series"): "EventSeries",
    # k8s.io/api/coordination/v1: Lease
    ("Lease", "spec"): "LeaseSpec",
    ("Lease", "spec.strategy"): "v1.CoordinatedLeaseStrategy",
}
"""Per (kind, JSON path without list indices): the Go name of a nested struct, or the Go type
of a field whose type is a named string (or list of them), as Go's errors print them."""


class _TypeError(ArgesError):
    """A value of the wrong type at some path (turned into Go's message by the caller)."""


def decode_error(body: dict[str, Any], kind: str, schema: dict[str, Any] | None) -> str | None:
    """The error Go's JSON decoding reports for ``body``, or None when it decodes.

    ``schema`` is the structural schema of a built-in kind (its whole body is typed); for a
    custom resource pass None: only ``metadata`` is decoded into a Go struct.
    """
    try:
        if schema is None:
            _object_meta(body.get("metadata"), "", standalone=True)
        else:
            _typed(body, schema, kind, "", kind)
    except _TypeError as exc:
        return str(exc)
    return None


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fail(value: Any, struct: str, field: str, go_type: str) -> _TypeError:
    shown = _value_kind(value)
    if (
        go_type in ("int64", "int32")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        shown = f"number {value}"
    where = f"Go struct field {struct}.{field}" if struct else "Go value"
    return _TypeError(f"json: cannot unmarshal {shown} into {where} of type {go_type}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _scalar(value: Any, go_type: str, struct: str, field: str) -> None:
    """Check one scalar (or map of strings, list of strings) against a Go type name."""
    if value is None or go_type == "any":
        return
    if go_type == "time":
        # metav1.Time decodes its JSON as a string first, outside the struct's context.
        if not isinstance(value, str):
            raise _fail(value, "", "", "string")
        return
    if go_type in ("int64", "int32"):
        low, high = _INT64 if go_type == "int64" else _INT32
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        if not ok:
            raise _fail(value, struct, field, go_type)
        return
    if go_type == "bool":
        if not isinstance(value, bool):
            raise _fail(value, struct, field, go_type)
        return
    if go_type.startswith("map[string]"):
        if not isinstance(value, dict):
            raise _fail(value, struct, field, go_type)
        for item in value.values():
            _scalar(item, go_type.removeprefix("map[string]"), struct, field)
        return
    if go_type.startswith("[]") and go_type != "[]uint8":
        if not isinstance(value, list):
            raise _fail(value, struct, field, go_type)
        for item in value:
            _scalar(item, go_type[2:], struct, field)
        return
    if not isinstance(value, str):
        raise _fail(value, struct, field, go_type)
    if go_type == "[]uint8":
        at = base64_error_offset(value)
        if at is not None:
            raise _TypeError(f"illegal base64 data at input byte {at}")


def _object_meta(meta: Any, path: str, *, standalone: bool, parent: str = "") -> None:
    if meta is None:
        return
    if not isinstance(meta, dict):
        if standalone:
            raise _fail(meta, "", "", "v1.ObjectMeta")
        raise _fail(meta, parent, path, "v1.ObjectMeta")
    for key, value in meta.items():
        spec = _OBJECT_META.get(key)
        if spec is None:
            continue
        field = _join(path, key)
        if isinstance(spec, str):
            _scalar(value, spec, "ObjectMeta", field)
            continue
        go_type, struct, fields = spec
        if value is None:
            continue
        if not isinstance(value, list):
            raise _fail(value, "ObjectMeta", field, go_type)
        for item in value:
            if item is None:
                continue
            if not isinstance(item, dict):
                raise _fail(item, "ObjectMeta", field, go_type[2:])
            for sub, sub_value in item.items():
                if sub in fields:
                    _scalar(sub_value, fields[sub], struct, _join(field, sub))


def _go_type(schema: dict[str, Any], kind: str, field: str) -> str:
    kinds = schema.get("type")
    # A named string type (or a list of them); a struct's name goes through _struct_name.
    named = GO_NAMES.get((kind, field))
    items = (schema.get("items") or {}).get("type")
    if named is not None and (kinds == "string" or (kinds == "array" and items == "string")):
        return named
    if kinds == "string" and schema.get("format") == "date-time":
        return "time"
    if kinds == "string":
        return "[]uint8" if schema.get("format") == "byte" else "string"
    if kinds == "integer":
        return "int32" if schema.get("format") == "int32" else "int64"
    if kinds == "number":
        return "float64"
    if kinds == "boolean":
        return "bool"
    if kinds == "array":
        return "[]" + _go_type(schema.get("items") or {}, kind, field)
    if kinds == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map[string]" + _go_type(schema["additionalProperties"], kind, field)
    if kinds == "object" and schema.get("properties"):
        return "v1." + _struct_name(kind, field)
    return "any"


def _struct_name(kind: str, field: str) -> str:
    if not field:
        return kind
    known = GO_NAMES.get((kind, field))
    if known is not None:
        return known
    # Not in the table (the API server's own kinds: CustomResourceDefinition, the webhook
    # configurations): named after the kind and the field, as close as it gets without
    # k8s.io/api's names for every struct of those.
    last = field.rsplit(".", 1)[-1]
    return kind + last[:1].upper() + last[1:]


def _typed(value: Any, schema: dict[str, Any], struct: str, path: str, kind: str) -> None:
    """Check ``value`` against a built-in kind's structural schema, as its Go struct would."""
    if value is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            raise _fail(value, struct, path, "intstr.IntOrString")
        return
    go_type = _go_type(schema, kind, path)
    if go_type == "any":
        return
    kinds = schema.get("type")
    if kinds == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _fail(value, struct, path, go_type)
        return
    if kinds == "object" and schema.get("properties"):
        if not isinstance(value, dict):
            raise _fail(value, struct, path, go_type)
        inner = kind if not path else _struct_name(kind, path)
        for key, item in value.items():
            sub = schema["properties"].get(key)
            if key == "metadata" and not path:
                _object_meta(item, "metadata", standalone=False, parent=kind)
            elif sub is not None:
                _typed(item, sub, inner, _join(path, key), kind)
        return
    if kinds == "array" and (schema.get("items") or {}).get("type") == "object":
        if not isinstance(value, list):
            raise _fail(value, struct, path, go_type)
        for item in value:
            _typed(item, schema["items"], struct, path, kind)
        return
    if kinds == "object" and isinstance(schema.get("additionalProperties"), dict):
        element = schema["additionalProperties"]
        if element.get("type") in ("object", "array"):
            if not isinstance(value, dict):
                raise _fail(value, struct, path, go_type)
            for item in value.values():
                _typed(item, element, struct, path, kind)
            return
    _scalar(value, go_type, struct, path)


def normalize_meta(meta: dict[str, Any]) -> None:
    """Make decoded ``metadata`` what its Go struct holds after decoding, in place: a null
    field is absent, a null in a string list or map the empty string, a null in a list of
    structs an empty struct (which validation then finds wanting). Call after
    :func:`decode_error` found nothing."""
    for key in [k for k, v in meta.items() if v is None]:
        del meta[key]
    for key in ("labels", "annotations"):
        if isinstance(meta.get(key), dict):
            meta[key] = {k: "" if v is None else v for k, v in meta[key].items()}
    if isinstance(meta.get("finalizers"), list):
        meta["finalizers"] = ["" if f is None else f for f in meta["finalizers"]]
    for key in ("ownerReferences", "managedFields"):
        if isinstance(meta.get(key), list):
            meta[key] = [
                {k: v for k, v in (item or {}).items() if v is not None} for item in meta[key]
            ]


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
