"""``x-kubernetes-list-type`` and ``x-kubernetes-map-type``: checked in CRDs, enforced in objects.

kube-apiserver refuses a ``set`` list with a repeated element and a ``map`` list with two items
sharing their ``x-kubernetes-list-map-keys`` (``apiextensions-apiserver/pkg/apiserver/schema/
listtype/validation.go``), and a CRD whose list and map types are malformed
(``apis/apiextensions/validation/validation.go``). Messages are kube's: ``spec.x[1]: Duplicate
value: "a"`` and, for map keys, Go's rendering of the key map
(``Duplicate value: map[string]interface {}{"type":"Ready"}``).
"""

from __future__ import annotations

import json
from typing import Any

from arges.apiserver.errors import Cause


def list_type_causes(schema: Any, path: str) -> list[Cause]:
    """What is wrong with the list and map types declared anywhere under ``schema``."""
    if not isinstance(schema, dict):
        return []
    causes: list[Cause] = []
    list_type = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys") or []
    kind = schema.get("type")
    map_type = schema.get("x-kubernetes-map-type")
    if map_type is not None and kind != "object":
        causes.append(
            _type_cause(path, kind, "must be object if x-kubernetes-map-type is specified")
        )
    if map_type is not None and map_type not in ("atomic", "granular"):
        causes.append(
            Cause(
                f"{path}.x-kubernetes-map-type",
                f'Unsupported value: "{map_type}": supported values: "atomic", "granular"',
                "FieldValueNotSupported",
            )
        )
    if list_type is not None and kind != "array":
        causes.append(
            _type_cause(path, kind, "must be array if x-kubernetes-list-type is specified")
        )
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        causes.append(
            Cause(
                f"{path}.x-kubernetes-list-type",
                f'Unsupported value: "{list_type}": supported values: "atomic", "map", "set"',
                "FieldValueNotSupported",
            )
        )
    if keys and list_type is None:
        causes.append(
            Cause(
                f"{path}.x-kubernetes-list-type",
                "Required value: must be map if x-kubernetes-list-map-keys is non-empty",
                "FieldValueRequired",
            )
        )
    elif keys and list_type != "map":
        causes.append(
            Cause(
                f"{path}.x-kubernetes-list-type",
                f'Invalid value: "{list_type}": must be map if x-kubernetes-list-map-keys is '
                "non-empty",
            )
        )
    items = schema.get("items")
    if list_type == "map":
        if not keys:
            causes.append(
                Cause(
                    f"{path}.x-kubernetes-list-map-keys",
                    "Required value: must not be empty if x-kubernetes-list-type is map",
                    "FieldValueRequired",
                )
            )
        if not isinstance(items, dict) or items.get("type") != "object":
            causes.append(
                Cause(
                    f"{path}.items.type",
                    f'Invalid value: "{(items or {}).get("type", "")}": must be object if '
                    "parent array's x-kubernetes-list-type is map",
                )
            )
        else:
            props = items.get("properties") or {}
            shown = "[]string{" + ", ".join(json.dumps(k) for k in keys) + "}"
            for key in keys:
                if key not in props:
                    causes.append(
                        Cause(
                            f"{path}.x-kubernetes-list-map-keys",
                            f"Invalid value: {shown}: entries must all be names of item properties",
                        )
                    )
                elif props[key].get("type") in ("array", "object"):
                    causes.append(
                        Cause(
                            f"{path}.items.properties[{key}].type",
                            'Invalid value: "object": must be a scalar type if parent '
                            "array's x-kubernetes-list-type is map",
                        )
                    )
            if len(set(keys)) != len(keys):
                causes.append(
                    Cause(
                        f"{path}.x-kubernetes-list-map-keys",
                        f"Invalid value: {shown}: must not contain duplicate entries",
                    )
                )
    for key, sub in (schema.get("properties") or {}).items():
        causes += list_type_causes(sub, f"{path}.properties[{key}]")
    if isinstance(items, dict):
        causes += list_type_causes(items, f"{path}.items")
    if isinstance(schema.get("additionalProperties"), dict):
        causes += list_type_causes(schema["additionalProperties"], f"{path}.additionalProperties")
    return causes


def _type_cause(path: str, kind: Any, why: str) -> Cause:
    if not kind:
        return Cause(f"{path}.type", f"Required value: {why}", "FieldValueRequired")
    return Cause(f"{path}.type", f'Invalid value: "{kind}": {why}')


def duplicates(obj: Any, schema: dict[str, Any], path: str = "") -> list[Cause]:
    """A cause for each repeated element of a ``set`` list and repeated key of a ``map`` list."""
    causes: list[Cause] = []
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, value in obj.items():
            if key in props and isinstance(props[key], dict):
                causes += duplicates(value, props[key], f"{path}.{key}" if path else key)
            elif isinstance(additional, dict):
                causes += duplicates(value, additional, f"{path}[{key}]")
    elif isinstance(obj, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            causes += _repeats(path, obj, obj)
        elif list_type == "map":
            causes += _map_repeats(path, obj, list(schema.get("x-kubernetes-list-map-keys") or []))
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(obj):
                causes += duplicates(item, items, f"{path}[{i}]")
    return causes


def _repeats(path: str, keys: list[Any], shown: list[Any]) -> list[Cause]:
    seen: dict[str, int] = {}
    causes = []
    for i, key in enumerate(keys):
        text = json.dumps(key, sort_keys=True)
        seen[text] = seen.get(text, 0) + 1
        if seen[text] == 2:
            causes.append(
                Cause(
                    f"{path}[{i}]", f"Duplicate value: {go_value(shown[i])}", "FieldValueDuplicate"
                )
            )
    return causes


def _map_repeats(path: str, items: list[Any], keys: list[str]) -> list[Cause]:
    for i, item in enumerate(items):
        if item is not None and not isinstance(item, dict):
            return [
                Cause(
                    f"{path}[{i}]",
                    f"Invalid value: {go_value(item)}: must be an object for an array of "
                    "list-type map",
                )
            ]
    key_maps = [
        {k: item[k] for k in keys if k in item} if isinstance(item, dict) else {} for item in items
    ]
    return _repeats(path, key_maps, key_maps)


def go_value(value: Any) -> str:
    """A bad value as kube's field errors print it (Go's ``%q`` or ``%#v``)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)}:{go_value(v)}" for k, v in sorted(value.items()))
        return "map[string]interface {}{" + inner + "}"
    return "[]interface {}{" + ", ".join(go_value(v) for v in value) + "}"
