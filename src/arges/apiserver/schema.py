"""Structural OpenAPI v3 schemas: pruning, defaulting and validation of objects.

This is what kube-apiserver does with a CRD's ``openAPIV3Schema`` (and what Go types do for
built-in kinds), in the same order: prune unknown fields, apply defaults, validate.

- Pruning (:mod:`arges.apiserver.pruning`) drops every field the schema does not declare,
  unless the schema says ``x-kubernetes-preserve-unknown-fields: true``; ``apiVersion``,
  ``kind`` and ``metadata`` at the root (and in ``x-kubernetes-embedded-resource`` objects) are
  always kept, ``metadata`` reduced to the ``ObjectMeta`` fields. The dropped paths are
  returned, so the caller can warn (``fieldValidation=Warn``) or refuse (``Strict``).
- Defaulting sets ``default`` wherever the parent object exists and the field is missing (or
  null and not ``nullable``), recursing into the defaults themselves.
- Validation uses ``jsonschema``'s Draft 4 validator (OpenAPI 3.0 schemas are Draft 4 with
  extensions); ``nullable`` and ``x-kubernetes-int-or-string`` are translated first. Messages
  follow kube-apiserver's wording (``spec.replicas in body must be of type integer: "x"``).
  Most writes are valid, so the same translated schema is first compiled by ``fastjsonschema``
  (about 30 times faster); only what it refuses, and objects holding a float (it takes ``1.0``
  as an integer, Draft 4 does not), go through ``jsonschema`` for the causes. Where the two
  disagree, ``jsonschema`` decides: the fast check only ever skips it for an object both accept.
- On an update, failures in parts the update left unchanged are ratcheted
  (:mod:`arges.apiserver.ratcheting`).

Reference: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
custom-resource-definitions/ (sections "Specifying a structural schema", "Field pruning",
"Defaulting", "Validation").
"""

from __future__ import annotations

import copy
import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from arges.apiserver import codec
from arges.apiserver.errors import Cause
from arges.apiserver.listtypes import duplicates
from arges.apiserver.pruning import Pruner
from arges.apiserver.ratcheting import composition_depth, unchanged

log = logging.getLogger(__name__)

_TYPE_NAMES = {
    "object": "object",
    "array": "array",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
}


@dataclass(frozen=True)
class Schema:
    """A structural schema with its compiled validator.

    ``raw`` is the ``openAPIV3Schema`` exactly as given (it is also what OpenAPI documents and
    ``kubectl explain`` show).
    """

    raw: dict[str, Any]
    validator: Draft4Validator
    # ``raw`` reduced to the branches that lead to what each walk looks for (a default, a
    # ``date-time``, a set or map list): an object is walked only where that can matter.
    _defaults: dict[str, Any] = field(default_factory=dict, compare=False)
    _formats: dict[str, Any] = field(default_factory=dict, compare=False)
    _lists: dict[str, Any] = field(default_factory=dict, compare=False)
    _numbers: _Numbers | None = field(default=None, compare=False)

    @classmethod
    def compile(cls, raw: dict[str, Any]) -> Schema:
        """Compile ``raw``; the same schema (the same JSON) compiled before is the same
        :class:`Schema`, whose ``raw`` is a copy of its own.

        A CRD's schemas are compiled when it is checked and again when it is served, and every
        API server in a process compiles the same built-in and CRD schemas: the Draft 4
        meta-schema check and the reductions cost most of an API server's start.

        Raises:
            jsonschema.SchemaError: when the translated schema is not valid Draft 4.
        """
        try:
            key = codec.dumps(raw)
        except TypeError:  # orjson's JSONEncodeError: not JSON (an int past 64 bits)
            return cls._compile(raw)
        return _compiled(codec.trim(key))

    @classmethod
    def _compile(cls, raw: dict[str, Any]) -> Schema:
        translated = to_json_schema(raw)
        Draft4Validator.check_schema(translated)
        return cls(
            raw,
            Draft4Validator(translated),
            _defaults=_reduce(raw, lambda node: "default" in node) or {},
            _formats=_reduce(raw, lambda node: node.get("format") == "date-time") or {},
            _lists=_reduce(raw, lambda node: bool(node.get("x-kubernetes-list-type"))) or {},
            _numbers=_numbers(_reduce(raw, _float_sensitive) or {}),
        )

    @functools.cached_property
    def _fast(self) -> Callable[[Any], Any] | None:
        # Compiled on first use: a CRD's schema is also compiled only to be checked, and
        # fastjsonschema's code generation costs tens of milliseconds for a large one.
        return _fast_validator(self.validator.schema)

    def _accepts(self, obj: dict[str, Any]) -> bool:
        """Whether the fast check finds ``obj`` valid (False: ask ``jsonschema``)."""
        fast = self._fast
        if fast is None or _float_where_sensitive(obj, self._numbers):
            return False
        try:
            fast(obj)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    @functools.cached_property
    def _pruner(self) -> Pruner:
        return Pruner.compile(self.raw)

    def prune(self, obj: dict[str, Any], pruned: dict[str, Any] | None = None) -> list[str]:
        """Drop undeclared fields from ``obj`` in place (:mod:`~arges.apiserver.pruning`);
        returns their dotted paths. ``pruned``: an earlier state of the object this schema
        pruned already, whose values ``obj`` kept are not walked."""
        return self._pruner.prune(obj, pruned)

    def default(self, obj: dict[str, Any], defaulted: dict[str, Any] | None = None) -> None:
        """Apply the schema's defaults to ``obj`` in place. ``defaulted``: an earlier state of
        the object this schema defaulted already; below a value ``obj`` kept equal to it
        every default is in place, and it is not walked."""
        _default(obj, self._defaults, defaulted)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[Cause]:
        """Everything wrong with ``obj``, one cause per failure, in a stable order.

        ``old``, the stored object of an update, ratchets the failures of parts the update
        left unchanged (:mod:`~arges.apiserver.ratcheting`); duplicates in ``set`` and
        ``map`` lists are refused all the same, as kube-apiserver refuses them.
        """
        errors = [] if self._accepts(obj) else list(self.validator.iter_errors(obj))
        if old is not None:
            errors = [
                e
                for e in errors
                if not unchanged(
                    list(e.absolute_path),
                    obj,
                    old,
                    self.raw,
                    stop=composition_depth(e.absolute_schema_path),
                )
            ]
        causes = [_cause(e) for e in errors]
        causes += duplicates(obj, self._lists)
        causes += [
            cause
            for parts, cause in _format_causes(obj, self._formats, "")
            if old is None or not unchanged(parts, obj, old, self.raw)
        ]
        return sorted(causes, key=lambda c: c.field)


_CHILDREN = ("properties", "items", "additionalProperties")


def _reduce(schema: Any, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """``schema`` with only the branches that hold a node ``wanted`` selects (None: none does).

    A declared property that leads nowhere stays declared, as ``{}``: the walks then neither
    descend into it nor take it for an ``additionalProperties`` key.
    """
    if not isinstance(schema, dict):
        return None
    out = {k: v for k, v in schema.items() if k not in _CHILDREN}
    found = wanted(schema)
    props = schema.get("properties")
    if isinstance(props, dict):
        reduced = {k: _reduce(sub, wanted) for k, sub in props.items()}
        out["properties"] = {k: sub if sub is not None else {} for k, sub in reduced.items()}
        found = found or any(sub is not None for sub in reduced.values())
    for key in ("items", "additionalProperties"):
        sub = _reduce(schema.get(key), wanted)
        if sub is not None:
            out[key] = sub
            found = True
    return out if found else None


def _fast_validator(translated: Any) -> Callable[[Any], Any] | None:
    """``translated`` compiled by fastjsonschema as Draft 4, without formats (None where it
    cannot compile it: ``jsonschema`` alone validates then)."""
    try:
        return fastjsonschema.compile(
            {"$schema": "http://json-schema.org/draft-04/schema#", **translated},
            formats={},
            use_default=False,
            use_formats=False,
            detailed_exceptions=False,
        )
    except Exception as exc:  # any failure only loses the fast path
        log.debug("no fast validator for a schema: %s", exc)
        return None


_COMPOSED = ("allOf", "anyOf", "oneOf", "not", "patternProperties", "definitions", "$ref")
"""Keywords under which a schema reaches values the reduced walks do not follow."""


def _float_sensitive(node: dict[str, Any]) -> bool:
    """Whether fastjsonschema may judge a float at ``node`` otherwise than Draft 4 does: it
    takes ``1.0`` for an integer and rounds ``multipleOf``; anywhere under a composition
    (int-or-string is one) the whole value is checked. Elsewhere a float is right or wrong
    for both alike."""
    kind = node.get("type")
    return (
        kind == "integer"
        or (isinstance(kind, list) and "integer" in kind)
        or "multipleOf" in node
        or bool(node.get("x-kubernetes-int-or-string"))
        or isinstance(node.get("items"), list)
        or any(key in node for key in _COMPOSED)
    )


@dataclass(frozen=True, slots=True)
class _Numbers:
    """A node of the schema reduced to :func:`_float_sensitive` places, as the walk of every
    write reads it: what a float here means, and the nodes below (None: nothing to look for).
    """

    whole: bool
    """A composition or a tuple: a float anywhere below counts."""
    leaf: bool
    """A float here counts."""
    props: dict[str, _Numbers | None]
    """The declared fields (an undeclared one goes to ``additional``)."""
    additional: _Numbers | None
    items: _Numbers | None


def _numbers(node: dict[str, Any]) -> _Numbers | None:
    """``node`` (reduced by :func:`_reduce`) compiled for :func:`_float_where_sensitive`."""
    if not node:
        return None
    additional, items = node.get("additionalProperties"), node.get("items")
    return _Numbers(
        whole=any(key in node for key in _COMPOSED) or isinstance(items, list),
        leaf=_float_sensitive(node),
        props={k: _numbers(v) for k, v in (node.get("properties") or {}).items()},
        additional=_numbers(additional) if isinstance(additional, dict) else None,
        items=_numbers(items) if isinstance(items, dict) else None,
    )


def _float_where_sensitive(value: Any, schema: _Numbers | None) -> bool:
    """Whether ``value`` holds a float at a place ``schema`` makes sensitive to it: the fast
    check is then not asked. A 3 MiB inventory under ``x-kubernetes-preserve-unknown-fields``
    is not walked at all, where a walk of every value held the event loop for 15-40 ms; every
    write walks the rest, so the schema is compiled for it and scalars are judged in place."""
    if schema is None:
        return False
    stack = [(value, schema)]
    while stack:
        item, node = stack.pop()
        if node.whole:
            if _has_float(item):
                return True
            continue
        kind = type(item)
        if kind is dict:
            props, additional = node.props, node.additional
            for key, sub_value in item.items():
                sub = props.get(key, additional)
                if sub is None:
                    continue
                sub_kind = type(sub_value)
                if sub_kind is dict or sub_kind is list or sub.whole:
                    stack.append((sub_value, sub))
                elif sub_kind is float and sub.leaf:
                    return True
        elif kind is list:
            sub = node.items
            if sub is not None:
                stack.extend((sub_value, sub) for sub_value in item)
        elif kind is float and node.leaf:
            return True
    return False


def _has_float(value: Any) -> bool:
    # A stack, not recursion: this walks every write's whole object.
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            return True
    return False


@functools.lru_cache(maxsize=128)
def _compiled(key: bytes) -> Schema:
    """The :class:`Schema` of the schema whose JSON is ``key`` (its own copy of it). Room
    for Arges' own schemas, the built-in kinds' and the Cluster API providers' CRDs (about
    60 in all) and some more."""
    raw: dict[str, Any] = codec.loads(key)
    return Schema._compile(raw)


_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$"
)


def _format_causes(
    value: Any, schema: Any, path: str, parts: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], Cause]]:
    """``format: date-time`` strings that are not timestamps, as kube-openapi words it, each
    with its place as property names and list indexes (``parts`` is ``path``'s)."""
    if not isinstance(schema, dict):
        return []
    if isinstance(value, str):
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            return [
                (
                    parts,
                    Cause(
                        path,
                        f"Invalid value: {_show(value)}: {path or '<root>'} in body must be of "
                        f"type date-time: {_show(value)}",
                        "FieldValueTypeInvalid",
                    ),
                )
            ]
        return []
    causes: list[tuple[tuple[str | int, ...], Cause]] = []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, additional)
            if sub:  # ``{}``: a declared field with no date-time below (see _reduce)
                where = _join(path, key) if key in props else f"{path}[{key}]"
                causes += _format_causes(item, sub, where, (*parts, key))
    elif isinstance(value, list):
        items = schema.get("items")
        if items:
            for i, item in enumerate(value):
                causes += _format_causes(item, items, f"{path}[{i}]", (*parts, i))
    return causes


def to_json_schema(schema: Any) -> Any:
    """Translate an OpenAPI v3 structural schema into Draft 4 JSON Schema."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "default", "example", "format"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        int_or_string = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        out = {"allOf": [out, int_or_string]} if out.get("anyOf") else {**out, **int_or_string}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _default(value: Any, schema: dict[str, Any], defaulted: Any = None) -> None:
    # ``defaulted``: the value at the same place in an object this schema defaulted, when
    # of the same type. Below a value equal to it (Python's equality of dicts and lists is
    # structural, and None equals only None) every default is in place already.
    if isinstance(value, dict):
        before = defaulted if type(defaulted) is dict else None
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if not isinstance(sub, dict):
                continue
            if "default" in sub and (
                key not in value or (value[key] is None and not sub.get("nullable"))
            ):
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default_changed(value[key], sub, before.get(key) if before else None)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in props:
                    _default_changed(item, additional, before.get(key) if before else None)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            before_items = defaulted if type(defaulted) is list else ()
            for i, item in enumerate(value):
                _default_changed(item, items, before_items[i] if i < len(before_items) else None)


def _default_changed(item: Any, schema: dict[str, Any], was: Any) -> None:
    """:func:`_default` of ``item`` unless it equals ``was``, its defaulted former self."""
    if was is None or was != item:
        _default(item, schema, was)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _field(err: ValidationError) -> str:
    out = ""
    for part in err.absolute_path:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, str(part))
    return out


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return type(value).__name__
    return str(value)


def _cause(err: ValidationError) -> Cause:
    field = _field(err)
    where = field or "<root>"
    kind = err.validator
    if kind == "required":
        missing = str(err.message).split("'")[1] if "'" in str(err.message) else ""
        return Cause(_join(field, missing), "Required value", "FieldValueRequired")
    if kind == "type":
        wanted = err.validator_value
        names = wanted if isinstance(wanted, list) else [wanted]
        typ = ",".join(_TYPE_NAMES.get(str(n), str(n)) for n in names if n != "null")
        return Cause(
            field,
            f"Invalid value: {_show(err.instance)}: {where} in body must be of type {typ}: "
            f"{_show(_type_of(err.instance))}",
            "FieldValueTypeInvalid",
        )
    if kind == "enum":
        values = err.validator_value if isinstance(err.validator_value, list) else []
        supported = ", ".join(_show(v) for v in values if v is not None)
        return Cause(
            field,
            f"Unsupported value: {_show(err.instance)}: supported values: {supported}",
            "FieldValueNotSupported",
        )
    if kind in ("maxLength", "maxItems", "maxProperties"):
        unit = {"maxLength": "characters", "maxItems": "items", "maxProperties": "properties"}
        return Cause(
            field,
            f"Too long: may not be more than {err.validator_value} {unit[str(kind)]}",
            "FieldValueTooLong",
        )
    messages = {
        "minimum": "should be greater than or equal to",
        "maximum": "should be less than or equal to",
        "minLength": "should be at least",
        "minItems": "should have at least",
        "minProperties": "should have at least",
        "pattern": "should match",
        "multipleOf": "should be a multiple of",
    }
    if kind in messages:
        value = err.validator_value
        shown = f"'{value}'" if kind == "pattern" else str(value)
        suffix = {"minLength": " chars long", "minItems": " items", "minProperties": " properties"}
        return Cause(
            field,
            f"Invalid value: {_show(err.instance)}: {where} in body {messages[str(kind)]} "
            f"{shown}{suffix.get(str(kind), '')}",
        )
    if kind in ("anyOf", "oneOf", "allOf", "not") and err.context:
        best = jsonschema.exceptions.best_match(err.context)
        if best is not None:
            return _cause(best)
    return Cause(field, f"Invalid value: {_show(err.instance)}: {err.message}")


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"
