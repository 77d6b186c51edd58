import pytest

from arges.apiserver.schema import Schema

SCHEMA = Schema.compile(
    {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                    "color": {"type": "string", "default": "blue", "enum": ["blue", "red"]},
                    "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                    "port": {"x-kubernetes-int-or-string": True},
                    "note": {"type": "string", "nullable": True},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"weight": {"type": "integer", "default": 1}},
                        },
                    },
                    "nested": {
                        "type": "object",
                        "properties": {"deep": {"type": "string", "default": "d"}},
                    },
                },
            },
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        },
    }
)


def test_pruning_drops_undeclared_fields_and_reports_their_paths() -> None:
    obj = {
        "apiVersion": "g/v1",
        "kind": "Thing",
        "metadata": {"name": "a", "bogus": 1},
        "spec": {
            "size": 1,
            "unknown": 2,
            "labels": {"free": "form"},
            "extra": {"anything": {"goes": True}},
            "items": [{"weight": 2, "junk": 1}],
        },
        "top": "level",
    }
    dropped = SCHEMA.prune(obj)
    assert sorted(dropped) == ["metadata.bogus", "spec.items[0].junk", "spec.unknown", "top"]
    assert obj["spec"]["labels"] == {"free": "form"}
    assert obj["spec"]["extra"] == {"anything": {"goes": True}}
    assert obj["apiVersion"] == "g/v1" and obj["metadata"] == {"name": "a"}


def test_defaults_apply_where_the_parent_exists_only() -> None:
    obj = {"spec": {"size": 1, "items": [{}, {"weight": 5}], "note": None}}
    SCHEMA.default(obj)
    assert obj["spec"]["color"] == "blue"
    assert obj["spec"]["items"] == [{"weight": 1}, {"weight": 5}]
    assert "nested" not in obj["spec"]
    assert obj["spec"]["note"] is None
    obj2 = {"spec": {"size": 1, "nested": {}}}
    SCHEMA.default(obj2)
    assert obj2["spec"]["nested"] == {"deep": "d"}
    assert "spec" not in (bare := {}) and (SCHEMA.default(bare) or bare) == {}


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({}, "spec.size", "Required value"),
        (
            {"size": "x"},
            "spec.size",
            'Invalid value: "x": spec.size in body must be of type integer: "string"',
        ),
        (
            {"size": 0},
            "spec.size",
            "Invalid value: 0: spec.size in body should be greater than or equal to 1",
        ),
        (
            {"size": 11},
            "spec.size",
            "Invalid value: 11: spec.size in body should be less than or equal to 10",
        ),
        (
            {"size": 1, "color": "pink"},
            "spec.color",
            'Unsupported value: "pink": supported values: "blue", "red"',
        ),
        (
            {"size": 1, "name": "toolong"},
            "spec.name",
            "Too long: may not be more than 5 characters",
        ),
        (
            {"size": 1, "name": "AB"},
            "spec.name",
            "Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'",
        ),
        ({"size": 1, "port": 1.5}, "spec.port", None),
        ({"size": 1, "items": [{"weight": "x"}]}, "spec.items[0].weight", None),
    ],
)
def test_validation_causes_read_like_kube_apiserver(
    spec: dict, field: str, message: str | None
) -> None:
    causes = SCHEMA.validate({"spec": spec})
    assert [c.field for c in causes] == [field]
    if message is not None:
        assert causes[0].message == message


def test_valid_objects_have_no_causes() -> None:
    ok = {"spec": {"size": 3, "port": "http", "note": None, "items": [{"weight": 1}]}}
    assert SCHEMA.validate(ok) == []
    assert SCHEMA.validate({"spec": {"size": 3, "port": 8080}}) == []


def test_date_time_strings_must_be_timestamps() -> None:
    schema = Schema.compile(
        {
            "type": "object",
            "properties": {
                "status": {
                    "type": "object",
                    "properties": {
                        "conditions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "lastTransitionTime": {"type": "string", "format": "date-time"}
                                },
                            },
                        }
                    },
                }
            },
        }
    )
    good = {"status": {"conditions": [{"lastTransitionTime": "2026-01-02T03:04:05Z"}]}}
    assert schema.validate(good) == []
    bad = {"status": {"conditions": [{"lastTransitionTime": "yesterday"}]}}
    assert [(c.field, c.message, c.reason) for c in schema.validate(bad)] == [
        (
            "status.conditions[0].lastTransitionTime",
            'Invalid value: "yesterday": status.conditions[0].lastTransitionTime in body must be '
            'of type date-time: "yesterday"',
            "FieldValueTypeInvalid",
        )
    ]


def test_list_type_set_and_map_refuse_duplicates() -> None:
    schema = Schema.compile(
        {
            "type": "object",
            "properties": {
                "tags": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                },
                "gates": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {"type": {"type": "string"}}},
                },
            },
        }
    )
    obj = {"tags": ["a", "b", "a"], "gates": [{"type": "X"}, {"type": "Y"}, {"type": "X"}]}
    assert [(c.field, c.message) for c in schema.validate(obj)] == [
        ("gates[2]", 'Duplicate value: map[string]interface {}{"type":"X"}'),
        ("tags[2]", 'Duplicate value: "a"'),
    ]


def test_a_schema_compiled_again_is_the_same_and_owns_its_copy() -> None:
    raw = {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
    }
    first = Schema.compile(raw)
    assert Schema.compile({**raw}) is first
    # The caller's dict changed afterwards changes nothing compiled from it.
    raw["properties"]["spec"]["properties"]["size"]["type"] = "string"
    assert first.raw["properties"]["spec"]["properties"]["size"] == {"type": "integer"}
    assert first.validate({"spec": {"size": 3}}) == []
    assert Schema.compile(raw) is not first
    assert Schema.compile(raw).validate({"spec": {"size": 3}}) != []


def test_a_schema_that_is_not_plain_json_is_compiled_all_the_same() -> None:
    # A bound past 64 bits: no JSON key for the cache, compiled every time.
    raw = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 2**70}}}
    schema = Schema.compile(raw)
    assert schema.validate({"n": 5}) == []
    assert schema.validate({"n": "x"}) != []
