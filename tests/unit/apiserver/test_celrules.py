"""x-kubernetes-validations: refused at CRD creation as kube refuses them, run as kube runs them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from arges.apiserver.celrules import compile_rules, go_rule
from arges.apiserver.celvalidator import Validator


def schema(spec_props: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> dict:
    spec: dict[str, Any] = {"type": "object", "properties": spec_props}
    if rules:
        spec["x-kubernetes-validations"] = rules
    return {"type": "object", "properties": {"spec": spec}}


def validator(raw: dict) -> Validator:
    node, causes = compile_rules(raw, "spec.validation.openAPIV3Schema")
    assert causes == [], causes
    assert node is not None
    return Validator(node)


def messages(causes: list) -> list[tuple[str, str, str]]:
    return [(c.field, c.message, c.reason) for c in causes]


INT = {"type": "integer"}
STR = {"type": "string", "maxLength": 64}


def test_a_false_rule_is_a_cause_at_its_node_with_the_schema_type() -> None:
    v = validator(schema({"replicas": {**INT, "x-kubernetes-validations": [
        {"rule": "self <= 5", "message": "at most five"}]}}))  # fmt: skip
    assert v.validate({"spec": {"replicas": 3}}) == []
    assert messages(v.validate({"spec": {"replicas": 9}})) == [
        ("spec.replicas", 'Invalid value: "integer": at most five', "FieldValueInvalid")
    ]


def test_root_rules_answer_at_the_nil_path_and_see_metadata_name() -> None:
    raw = schema({})
    raw["x-kubernetes-validations"] = [{"rule": "self.metadata.name.startsWith('ok-')"}]
    v = validator(raw)
    assert v.validate({"metadata": {"name": "ok-1"}, "spec": {}}) == []
    assert messages(v.validate({"metadata": {"name": "bad"}, "spec": {}})) == [
        (
            "<nil>",
            "Invalid value: \"object\": failed rule: self.metadata.name.startsWith('ok-')",
            "FieldValueInvalid",
        )
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"reason": "FieldValueForbidden"}, ("Forbidden: no", "FieldValueForbidden")),
        ({"reason": "FieldValueRequired"}, ("Required value: no", "FieldValueRequired")),
        ({"reason": "FieldValueDuplicate"}, ('Duplicate value: "object"', "FieldValueDuplicate")),
        (
            {"messageExpression": "'a is ' + string(self.a)"},
            ('Invalid value: "object": a is 2', "FieldValueInvalid"),
        ),
        (
            {"messageExpression": "'a / 0 is ' + string(self.a / 0)"},
            ('Invalid value: "object": no', "FieldValueInvalid"),
        ),
    ],
)
def test_reasons_and_message_expressions(extra: dict, expected: tuple[str, str]) -> None:
    v = validator(schema({"a": INT}, [{"rule": "self.a < 2", "message": "no", **extra}]))
    [cause] = v.validate({"spec": {"a": 2}})
    assert (cause.field, cause.message, cause.reason) == ("spec", *expected)


def test_field_path_moves_the_cause() -> None:
    rule = {"rule": "self.a.b < 2", "message": "no", "fieldPath": ".a.b"}
    v = validator(schema({"a": {"type": "object", "properties": {"b": INT}}}, [rule]))
    assert [c.field for c in v.validate({"spec": {"a": {"b": 3}}})] == ["spec.a.b"]


def test_rules_run_for_every_item_and_map_value() -> None:
    item = {**STR, "x-kubernetes-validations": [{"rule": "self != 'Ready'", "message": "no"}]}
    v = validator(
        schema(
            {
                "list": {"type": "array", "maxItems": 8, "items": item},
                "map": {"type": "object", "additionalProperties": item},
            }
        )
    )
    causes = v.validate({"spec": {"list": ["a", "Ready"], "map": {"x": "Ready", "y": "b"}}})
    assert [c.field for c in causes] == ["spec.list[1]", "spec.map[x]"]


def test_transition_rules_run_on_update_against_the_correlated_old_value() -> None:
    keyed = {
        "type": "array",
        "maxItems": 8,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": STR, "size": INT},
            "x-kubernetes-validations": [
                {"rule": "self.size >= oldSelf.size", "message": "cannot shrink"}
            ],
        },
    }
    v = validator(schema({"disks": keyed}))
    new = {"spec": {"disks": [{"name": "b", "size": 1}, {"name": "a", "size": 5}]}}
    assert v.validate(new) == [], "no old object: transition rules do not run on create"
    old = {"spec": {"disks": [{"name": "a", "size": 10}, {"name": "c", "size": 9}]}}
    assert messages(v.validate(new, old)) == [
        ("spec.disks[1]", 'Invalid value: "object": cannot shrink', "FieldValueInvalid")
    ], "item a is matched by its key, b has no old self"


def test_optional_old_self_runs_on_create_too() -> None:
    rule = {
        "rule": "!oldSelf.hasValue() || self == oldSelf.value()",
        "message": "immutable once set",
        "optionalOldSelf": True,
    }
    v = validator(schema({"id": {**STR, "x-kubernetes-validations": [rule]}}))
    assert v.validate({"spec": {"id": "x"}}) == []
    assert v.validate({"spec": {"id": "x"}}, {"spec": {"id": "x"}}) == []
    assert [c.message for c in v.validate({"spec": {"id": "y"}}, {"spec": {"id": "x"}})] == [
        'Invalid value: "string": immutable once set'
    ]


def test_date_time_strings_are_timestamps_and_int_or_string_is_dynamic() -> None:
    v = validator(
        schema(
            {
                "at": {"type": "string", "format": "date-time"},
                "port": {"x-kubernetes-int-or-string": True},
            },
            [
                {"rule": "self.at > timestamp('2020-01-01T00:00:00Z')", "message": "too old"},
                {"rule": "type(self.port) == int || self.port.endsWith('%')", "message": "port"},
            ],
        )
    )
    assert v.validate({"spec": {"at": "2024-01-01T00:00:00Z", "port": 80}}) == []
    assert [
        c.message for c in v.validate({"spec": {"at": "2019-01-01T00:00:00Z", "port": "x"}})
    ] == [
        'Invalid value: "object": too old',
        'Invalid value: "object": port',
    ]


def test_evaluation_errors_name_the_rule() -> None:
    v = validator(schema({"a": INT, "b": INT}, [{"rule": "self.a == self.b", "message": "same"}]))
    assert messages(v.validate({"spec": {"a": 1}})) == [
        (
            "spec",
            'Invalid value: "object": no such key: b evaluating rule: same',
            "FieldValueInvalid",
        )
    ]


def test_a_rule_over_its_per_call_budget_stops_validation() -> None:
    items = {"type": "array", "maxItems": 10, "items": INT}
    rule = {"rule": "self.n.all(x, self.n.all(y, x + y >= 0))", "message": "sums"}
    v = validator(schema({"n": items}, [rule]))
    # Ten items pass the static estimate; five thousand (which the schema would refuse
    # before the rules run) show what the runtime meter does with a runaway rule.
    causes = v.validate({"spec": {"n": list(range(5000))}})
    assert messages(causes) == [
        (
            "spec",
            "Invalid value: \"object\": 'operation cancelled: actual cost limit exceeded': no "
            "further validation rules will be run due to call cost exceeds limit for rule: sums",
            "FieldValueInvalid",
        )
    ]


def test_rules_do_not_run_over_values_of_the_wrong_type() -> None:
    from arges.apiserver.errors import Cause

    v = validator(schema({"a": INT}, [{"rule": "self.a > 0"}]))
    prior = [Cause("spec.a", "Invalid value: ...", "FieldValueTypeInvalid")]
    assert [c.message for c in v.validate({"spec": {"a": "x"}}, None, prior)] == [
        'Invalid value: "null": some validation rules were not checked because the object was '
        "invalid; correct the existing errors to complete validation"
    ]


# At CRD creation.

BASE = "spec.validation.openAPIV3Schema"


def crd_causes(raw: dict) -> list[tuple[str, str]]:
    return [(c.field, c.message) for c in compile_rules(raw, BASE)[1]]


def test_rules_that_do_not_compile_are_refused_with_kube_wording() -> None:
    rule = {"rule": "self.nope > 0"}
    [(where, message)] = crd_causes(schema({"a": INT}, [rule]))
    assert where == f"{BASE}.properties[spec].x-kubernetes-validations[0].rule"
    assert message.startswith(
        'Invalid value: apiextensions.ValidationRule{Rule:"self.nope > 0", Message:"", '
        'MessageExpression:"", Reason:(*apiextensions.FieldValueErrorReason)(nil), '
        'FieldPath:"", OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:5: '
        "undefined field 'nope'"
    ), message


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ({"rule": "self.a"}, "rule", "cel expression must evaluate to a bool"),
        ({"rule": " "}, "rule", "Required value: rule is not specified"),
        (
            {"rule": "true", "reason": "Nope"},
            "reason",
            'Unsupported value: "Nope": supported values: "FieldValueDuplicate", '
            '"FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"',
        ),
        ({"rule": "true", "fieldPath": ".zz"}, "fieldPath", "fieldPath must be a valid path"),
        (
            {"rule": "true", "optionalOldSelf": True},
            "optionalOldSelf",
            "may not be set if oldSelf is not used in rule",
        ),
        (
            {"rule": "self.a > 0\n&& true"},
            "message",
            "Required value: message must be specified if rule contains line breaks",
        ),
    ],
)
def test_malformed_rules_are_refused(rule: dict, field: str, message: str) -> None:
    [(where, text)] = crd_causes(schema({"a": INT}, [rule]))
    assert where == f"{BASE}.properties[spec].x-kubernetes-validations[0].{field}"
    assert message in text


def test_old_self_is_refused_where_old_values_cannot_be_correlated() -> None:
    item = {**STR, "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}
    [(where, message)] = crd_causes(schema({"l": {"type": "array", "maxItems": 4, "items": item}}))
    assert where.endswith("properties[l].items.x-kubernetes-validations[0].rule")
    assert message.endswith(
        f"oldSelf cannot be used on the uncorrelatable portion of the schema within "
        f"{BASE}.properties[spec].properties[l]"
    )


def test_rules_whose_estimated_cost_is_unbounded_are_refused() -> None:
    unbounded = {"type": "array", "items": {"type": "string"}}
    rule = {"rule": "self.l.all(x, self.l.exists(y, x == y))"}
    causes = crd_causes(schema({"l": unbounded}, [rule]))
    assert (
        f"{BASE}.properties[spec].x-kubernetes-validations[0].rule",
        "Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try "
        "simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, "
        "maps, and strings are declared)",
    ) in causes
    bounded = copy.deepcopy(unbounded)
    bounded["maxItems"] = 10
    bounded["items"]["maxLength"] = 10
    assert crd_causes(schema({"l": bounded}, [rule])) == []


def test_go_rule_prints_set_pointers() -> None:
    text = go_rule({"rule": "x", "reason": "FieldValueForbidden", "optionalOldSelf": True})
    assert 'Reason:(*apiextensions.FieldValueErrorReason)("FieldValueForbidden")' in text
    assert "OptionalOldSelf:(*bool)(true)" in text


def test_equality_of_objects_is_costed_as_kube_does_so_cluster_apis_crds_install() -> None:
    # Cluster API v1.10's MachineDrainRule: lists of up to 32 selector objects, each checked
    # unique against the others. cel-go costs object equality by the smaller operand's size,
    # and kube's schema types give objects none, so kube-apiserver accepts the CRD.
    selector = {
        "type": "object",
        "properties": {
            "selector": {
                "type": "object",
                "properties": {
                    "matchLabels": {"type": "object", "additionalProperties": STR},
                    "matchExpressions": {"type": "array", "items": {"type": "object"}},
                },
            }
        },
    }
    unique = {"rule": "self.all(x, self.exists_one(y, x == y))"}
    machines = {"type": "array", "maxItems": 32, "items": selector}
    machines["x-kubernetes-validations"] = [unique]
    assert crd_causes(schema({"machines": machines, "pods": dict(machines)})) == []
