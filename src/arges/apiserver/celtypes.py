"""Static CEL types: what the checker knows of each expression, and of each schema node.

A :class:`Type` carries the largest size the schema allows (``maxLength``, ``maxItems``,
``maxProperties``, else what fits in kube-apiserver's 3 MiB request limit), which is what the
static cost estimate multiplies by, as kube's estimator does with cel-go's ``SizeEstimate``.
Schemas map to types as ``k8s.io/apiserver/pkg/cel/common/schemas.go`` maps them; property
names reach CEL escaped as ``k8s.io/apiserver/pkg/cel/escaping.go`` escapes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_REQUEST_BYTES = 3 * 1024 * 1024
"""kube-apiserver's request size limit: the size of anything a schema leaves unbounded."""
UNBOUNDED = MAX_REQUEST_BYTES


@dataclass(frozen=True)
class Type:
    """A static CEL type, with the largest size the schema allows (for cost estimates).

    ``kind`` is one of dyn, null, bool, int, uint, double, string, bytes, list, map, object,
    timestamp, duration, type, optional, or a library kind (quantity, url). ``elem`` is a list's
    element, a map's value or an optional's content; ``fields`` an object's properties.
    """

    kind: str
    elem: Type | None = None
    fields: Mapping[str, Type] | None = None
    max_size: int = 0

    def name(self) -> str:
        """cel-go's spelling of the type in messages (``list(string)``)."""
        if self.kind == "list":
            return f"list({self.elem.name() if self.elem else 'dyn'})"
        if self.kind == "map":
            return f"map(string, {self.elem.name() if self.elem else 'dyn'})"
        if self.kind == "optional":
            return f"optional_type({self.elem.name() if self.elem else 'dyn'})"
        if self.kind == "object":
            return "object"
        return {
            "timestamp": "google.protobuf.Timestamp",
            "duration": "google.protobuf.Duration",
        }.get(self.kind, self.kind)


_WELL_KNOWN = {"timestamp": "google.protobuf.Timestamp", "duration": "google.protobuf.Duration"}
DYN = Type("dyn")
BOOL = Type("bool")
INT = Type("int")
UINT = Type("uint")
DOUBLE = Type("double")
NULL = Type("null")
TIMESTAMP = Type("timestamp")
DURATION = Type("duration")
TYPE = Type("type")


def string_type(max_size: int = UNBOUNDED) -> Type:
    """A string type at most ``max_size`` characters long."""
    return Type("string", max_size=max_size)


STRING = string_type()


def list_type(elem: Type, max_size: int = UNBOUNDED) -> Type:
    """A list type of ``elem`` with at most ``max_size`` items."""
    return Type("list", elem, max_size=max_size)


def map_type(value: Type, max_size: int = UNBOUNDED) -> Type:
    """A map type from strings to ``value``."""
    return Type("map", value, max_size=max_size)


# Property names that are CEL keywords are reached escaped (``__in__``); so are names with
# characters CEL identifiers cannot hold (k8s.io/apiserver/pkg/cel/escaping.go).
RESERVED = frozenset(
    {
        "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
        "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
        "void", "while",
    }
)  # fmt: skip


def escape(name: str) -> str | None:
    """The identifier a property is reached by in CEL, or None when it cannot be."""
    if name in RESERVED:
        return f"__{name}__"
    out = []
    i = 0
    while i < len(name):
        c = name[i]
        if name.startswith("__", i):
            out.append("__underscores__")
            i += 2
            continue
        if c.isascii() and (c.isalnum() or c == "_"):
            out.append(c)
        elif c in "./-":
            out.append({".": "__dot__", "/": "__slash__", "-": "__dash__"}[c])
        else:
            return None
        i += 1
    text = "".join(out)
    return text if text and not text[0].isdigit() else None


def unescape(name: str) -> str:
    """The property name an escaped identifier stands for (inverse of :func:`escape`)."""
    if name.startswith("__") and name.endswith("__") and name[2:-2] in RESERVED:
        return name[2:-2]
    return (
        name.replace("__underscores__", "\0")
        .replace("__dot__", ".")
        .replace("__dash__", "-")
        .replace("__slash__", "/")
        .replace("\0", "__")
    )


NUMERIC = frozenset({"int", "uint", "double"})


def cost_sum(*costs: int) -> int:
    """Costs added up, capped where cel-go's unsigned estimates saturate."""
    return min(sum(costs), 2**63)


def common_type(types: list[Type]) -> Type:
    """The element type of a literal: one kind (at the largest size seen), else dyn."""
    kinds = {t.kind for t in types}
    if len(kinds) != 1 or kinds & {"list", "map", "object", "optional"}:
        return DYN
    return Type(types[0].kind, max_size=max(t.max_size for t in types))


def comparable(a: Type, b: Type) -> bool:
    """Whether ``==`` type-checks between ``a`` and ``b`` (cel-go: same type, or dyn/null)."""
    if "dyn" in (a.kind, b.kind) or "null" in (a.kind, b.kind):
        return True
    if a.kind == b.kind:
        if a.kind in ("list", "map", "optional"):
            return comparable(a.elem or DYN, b.elem or DYN)
        return True
    return {a.kind, b.kind} <= {"object", "map"}


def orderable(a: Type, b: Type) -> bool:
    """Whether ``<`` and friends type-check between ``a`` and ``b``."""
    if "dyn" in (a.kind, b.kind):
        return True
    if a.kind in NUMERIC and b.kind in NUMERIC:
        return True
    return a.kind == b.kind and a.kind in (
        "string",
        "bytes",
        "bool",
        "timestamp",
        "duration",
        "quantity",
    )


def compare_cost(a: Type, b: Type) -> int:
    """The estimated cost of comparing values of these types, as cel-go estimates ``==`` and
    ordering: the smaller of the two sizes times the traversal factor 0.1, rounded up.
    Scalars have size 1; objects 0 (kube's schema types give them no element count); dyn an
    unknown, unbounded size."""
    smallest = min(_compare_size(a), _compare_size(b))
    return math.ceil(smallest * 0.1)


def _compare_size(t: Type) -> int:
    if t.kind in ("string", "bytes", "list", "map"):
        return t.max_size
    if t.kind == "object":
        return 0
    if t.kind == "dyn":
        return 2**64 - 1
    return 1


def arith_type(op: str, a: Type, b: Type) -> Type | None:
    """The result type of arithmetic ``op`` over ``a`` and ``b``, or None when none applies."""
    if "dyn" in (a.kind, b.kind):
        return DYN
    if op == "add":
        if a.kind == b.kind and a.kind in ("int", "uint", "double", "duration"):
            return a
        if a.kind == b.kind and a.kind in ("string", "bytes"):
            return Type(a.kind, max_size=a.max_size + b.max_size)
        if a.kind == b.kind == "list":
            elem = a.elem if a.elem == b.elem else DYN
            return list_type(elem or DYN, a.max_size + b.max_size)
        if {a.kind, b.kind} == {"timestamp", "duration"}:
            return TIMESTAMP
        return None
    if op == "sub":
        if a.kind == b.kind and a.kind in ("int", "uint", "double", "duration"):
            return a
        if a.kind == "timestamp" and b.kind == "timestamp":
            return DURATION
        if a.kind == "timestamp" and b.kind == "duration":
            return TIMESTAMP
        return None
    if op == "mod":
        return a if a.kind == b.kind and a.kind in ("int", "uint") else None
    return a if a.kind == b.kind and a.kind in NUMERIC else None


# Schemas as CEL types (k8s.io/apiserver/pkg/cel/common/schemas.go).


def _min_json_size(schema: dict[str, Any]) -> int:
    kind = schema.get("type")
    if kind == "string":
        return 2
    if kind == "boolean":
        return 4
    if kind in ("integer", "number"):
        return 1
    return 2


def max_items(schema: dict[str, Any], key: str, elem: dict[str, Any], per_item: int) -> int:
    """``schema[key]`` (``maxItems``, ``maxProperties``), or how many of the smallest ``elem``
    fit in a request (kube's ``estimateMaxArrayItemsFromMinSize``)."""
    declared = schema.get(key)
    if isinstance(declared, int):
        return declared
    return (MAX_REQUEST_BYTES - 2) // (_min_json_size(elem) + per_item)


def schema_type(schema: dict[str, Any], *, resource_root: bool = False) -> Type:
    """The CEL type of a structural schema node, with its size bounds.

    Resource roots (the top level and ``x-kubernetes-embedded-resource`` objects) expose
    ``apiVersion``, ``kind`` and ``metadata.name``/``metadata.generateName`` only, as kube does.
    Properties whose names cannot be escaped into identifiers are not reachable.
    """
    if schema.get("x-kubernetes-int-or-string"):
        return DYN
    kind = schema.get("type")
    props = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    embedded = resource_root or bool(schema.get("x-kubernetes-embedded-resource"))
    if kind == "object" or (kind is None and (props or embedded)):
        if isinstance(additional, dict) and not props:
            size = max_items(schema, "maxProperties", additional, 4)
            return map_type(schema_type(additional), size)
        if not props and not embedded and schema.get("x-kubernetes-preserve-unknown-fields"):
            return DYN
        fields: dict[str, Type] = {}
        for name, sub in props.items():
            ident = escape(name)
            if ident is not None and isinstance(sub, dict):
                fields[ident] = schema_type(
                    sub, resource_root=bool(sub.get("x-kubernetes-embedded-resource"))
                )
        if embedded:
            fields["apiVersion"] = string_type()
            fields["kind"] = string_type()
            fields["metadata"] = Type(
                "object", fields={"name": string_type(), "generateName": string_type()}
            )
        if not fields and additional is True:
            return map_type(DYN)
        size = max_items(schema, "maxProperties", {}, 4)
        return Type("object", fields=fields, max_size=size)
    if kind == "array":
        items: dict[str, Any] = schema["items"] if isinstance(schema.get("items"), dict) else {}
        return list_type(schema_type(items), max_items(schema, "maxItems", items, 1))
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return TIMESTAMP
        if fmt == "duration":
            return DURATION
        if fmt == "byte":
            return Type("bytes", max_size=schema.get("maxLength") or MAX_REQUEST_BYTES)
        return string_type(schema.get("maxLength") or MAX_REQUEST_BYTES - 2)
    if kind == "integer":
        return INT
    if kind == "number":
        return DOUBLE
    if kind == "boolean":
        return BOOL
    return DYN
