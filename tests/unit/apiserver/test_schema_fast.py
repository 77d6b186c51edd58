"""The fast schema check never accepts what Draft 4 (``jsonschema``) refuses.

:class:`Schema` skips ``jsonschema`` for objects fastjsonschema accepts; that is sound only if
every such object is valid. Random objects shaped by each schema (Arges' CRDs and, where
../shared is present, the upstream Cluster API, CABPT, CACPPT and Sidero CRDs), with wrong
types, bools for integers, enum misses, bounds off by one and unknown fields mixed in, are
checked by both: whenever the fast check accepts, ``jsonschema`` finds no error.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from arges.api.crds import all_crds
from arges.apiserver.listtypes import duplicates
from arges.apiserver.schema import (
    _COMPOSED,
    Schema,
    _default,
    _float_sensitive,
    _float_where_sensitive,
    _format_causes,
    _has_float,
    to_json_schema,
)

SHARED = Path(__file__).resolve().parents[4] / "shared" / "capi"
WRONG: list[Any] = [
    True,
    False,
    0,
    1,
    -1,
    2**40,
    1.0,
    2.5,
    "",
    "x",
    None,
    [],
    {},
    {"k": "v"},
    ["a"],
]
STRINGS = ["", "a", "abc-1", "10.0.0.1", "v1.11.7", "Ready", "x" * 70, "é", "a.b/c", "1Gi"]


def schemas() -> list[tuple[str, dict[str, Any]]]:
    crds = list(all_crds())
    for path in sorted(SHARED.glob("*/*.yaml")) if SHARED.is_dir() else []:
        crds += [
            d
            for d in yaml.safe_load_all(path.read_text())
            if d and d.get("kind") == "CustomResourceDefinition"
        ]
    return [
        (f"{crd['spec']['names']['kind']}/{version['name']}", version["schema"]["openAPIV3Schema"])
        for crd in crds
        for version in crd["spec"]["versions"]
        if "schema" in version
    ]


def sample(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value shaped by the Draft 4 ``schema``: mostly right, sometimes subtly wrong."""
    if not isinstance(schema, dict) or depth > 8:
        return rng.choice(WRONG)
    if rng.random() < 0.04:
        return rng.choice(WRONG)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema and rng.random() < 0.7:
            return sample(rng.choice(schema[key]), rng, depth + 1)
    if "enum" in schema:
        return rng.choice(schema["enum"]) if rng.random() < 0.9 else rng.choice(STRINGS)
    kinds = schema.get("type")
    kind = rng.choice(kinds) if isinstance(kinds, list) else kinds
    if kind is None and "properties" in schema:
        kind = "object"
    if kind == "object" or (kind is None and "additionalProperties" in schema):
        props: dict[str, Any] = schema.get("properties") or {}
        out: dict[str, Any] = {}
        for name, sub in props.items():
            wanted = name in (schema.get("required") or []) or rng.random() < 0.5
            if wanted and rng.random() < 0.97:
                out[name] = sample(sub, rng, depth + 1)
        extra = schema.get("additionalProperties")
        for i in range(
            rng.randint(0, 2) if extra not in (None, False) or rng.random() < 0.1 else 0
        ):
            out[f"k{i}"] = sample(extra if isinstance(extra, dict) else {}, rng, depth + 1)
        return out
    if kind == "array":
        count = rng.choice([0, 1, 2, 3, schema.get("minItems", 0), schema.get("maxItems", 3) + 1])
        return [sample(schema.get("items"), rng, depth + 1) for _ in range(min(count, 6))]
    if kind == "integer":
        bounds = [schema[k] + d for k in ("minimum", "maximum") if k in schema for d in (-1, 0, 1)]
        # 1.0 is an integer to fastjsonschema, not to Draft 4.
        return rng.choice([0, 1, 7, -3, 65536, True, 1.0, 3.5, *bounds])
    if kind == "number":
        return rng.choice(
            [0, 2, -1, True, 0.5, 0.3, *[schema[k] for k in ("minimum", "maximum") if k in schema]]
        )
    if kind == "boolean":
        return rng.choice([True, False, 0, 1])
    if kind == "string":
        lengths = [
            schema[k] + d for k in ("minLength", "maxLength") if k in schema for d in (-1, 0, 1)
        ]
        return rng.choice([*STRINGS, *("a" * max(n, 0) for n in lengths)])
    if kind == "null":
        return None
    return rng.choice(WRONG)


@pytest.mark.parametrize(("name", "raw"), schemas(), ids=[n for n, _ in schemas()])
def test_the_fast_check_accepts_only_what_jsonschema_accepts(
    name: str, raw: dict[str, Any]
) -> None:
    schema = Schema.compile(raw)
    rng = random.Random(name)
    accepted = refused = 0
    for _ in range(300):
        obj = sample(schema.validator.schema, rng)
        if not isinstance(obj, dict):
            continue
        errors = list(schema.validator.iter_errors(obj))
        if schema._accepts(obj):
            assert not errors, f"{name}: fast accepted {obj!r}, Draft 4 says {errors[0].message}"
            accepted += 1
        else:
            refused += 1
    print(f"{name}: fast accepted {accepted}, refused {refused}")
    assert refused, f"{name}: the samples never tried anything invalid"


def float_where_sensitive(value: Any, node: Any) -> bool:
    """The float check's meaning, along the whole schema: a float where fastjsonschema may
    judge it otherwise than Draft 4 (anywhere under a composition or a tuple)."""
    if not isinstance(node, dict):
        return False
    if _float_sensitive(node):
        if any(key in node for key in _COMPOSED) or isinstance(node.get("items"), list):
            return _has_float(value)
        if type(value) is float:
            return True
    if isinstance(value, dict):
        props, additional = node.get("properties") or {}, node.get("additionalProperties")
        return any(float_where_sensitive(v, props.get(k, additional)) for k, v in value.items())
    if isinstance(value, list):
        return any(float_where_sensitive(v, node.get("items")) for v in value)
    return False


@pytest.mark.parametrize(("name", "raw"), schemas(), ids=[n for n, _ in schemas()])
def test_the_reduced_walks_find_what_the_whole_schema_finds(name: str, raw: dict[str, Any]) -> None:
    """Defaults, date-time formats, set/map list duplicates and floats the fast check may
    misjudge, looked for along the reduced schemas, come out as along the whole one (on objects sampled from the whole schema)."""
    schema = Schema.compile(raw)
    rng = random.Random(f"walks {name}")
    for _ in range(200):
        obj = sample(to_json_schema(raw) if rng.random() < 0.5 else raw, rng)
        if not isinstance(obj, dict):
            continue
        assert duplicates(obj, schema._lists) == duplicates(obj, raw)
        assert _float_where_sensitive(obj, schema._numbers) == float_where_sensitive(obj, raw)
        assert _format_causes(obj, schema._formats, "") == _format_causes(obj, raw, "")
        whole, reduced = copy.deepcopy(obj), copy.deepcopy(obj)
        _default(whole, raw)
        schema.default(reduced)
        assert reduced == whole


def test_the_fast_check_is_used_for_valid_objects_and_not_for_floats() -> None:
    schema = Schema.compile(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {"replicas": {"type": "integer"}, "mode": {"enum": [1, "a"]}},
                }
            },
        }
    )
    assert schema._accepts({"spec": {"replicas": 3, "mode": "a"}})
    assert not schema._accepts({"spec": {"mode": True}}), "a boolean is not the enum's 1"
    assert not schema._accepts({"spec": {"replicas": 3.0}}), "floats go to jsonschema"
    (cause,) = schema.validate({"spec": {"replicas": 3.0}})
    assert cause.field == "spec.replicas" and "must be of type integer" in cause.message
    assert schema.validate({"spec": {"replicas": 3}}) == []


FLOATS = {
    "type": "object",
    "properties": {
        "step": {"type": "number", "multipleOf": 0.1},
        "port": {"x-kubernetes-int-or-string": True},
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"step": {"type": "number", "multipleOf": 0.1}},
            },
        },
        "byName": {"type": "object", "additionalProperties": {"type": "number", "multipleOf": 0.1}},
        "ratio": {"type": "number", "maximum": 1},
        "inventory": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "choice": {"anyOf": [{"type": "object", "properties": {"x": {"type": "number"}}}]},
    },
}


@pytest.mark.parametrize(
    ("obj", "valid", "fast"),
    [
        # fastjsonschema finds 0.3 a multiple of 0.1; Draft 4 (and kube-openapi) does not
        ({"step": 0.3}, False, False),
        ({"steps": [{"step": 0.5}, {"step": 0.3}]}, False, False),
        ({"byName": {"a": 0.3}}, False, False),
        ({"port": 1.5}, False, False),
        ({"step": 0.5}, True, False),
        # where a float is right or wrong alike for both, the fast check still answers
        ({"ratio": 0.5}, True, True),
        ({"ratio": 1.5}, False, False),
        ({"inventory": {"disks": [{"size": 1.5}] * 1000, "load": 0.3}}, True, True),
        ({"steps": [{"step": 1}], "inventory": {"load": 0.3}}, True, True),
        # under a composition, any float below sends the object to Draft 4
        ({"choice": {"x": 0.5}}, True, False),
        ({"choice": {"x": 1}}, True, True),
    ],
)
def test_floats_go_to_draft_4_only_where_the_fast_check_may_judge_them_otherwise(
    obj: dict[str, Any], valid: bool, fast: bool
) -> None:
    schema = Schema.compile(FLOATS)
    assert (schema.validate(obj) == []) is valid
    assert schema._accepts(obj) is fast
