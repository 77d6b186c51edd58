"""Admission webhooks as kube-apiserver decides and words them: rules, selectors, the
answers it accepts and the refusals it passes on."""

from __future__ import annotations

import pytest

from arges.apiserver.admission import Denied, _verify
from arges.apiserver.webhookmatch import Rule, label_selector_causes, rule_matches


def rendered(causes: list) -> list[str]:
    return [c.render() for c in causes]


def rule(resources: list[str], scope: str = "*", ops: tuple[str, ...] = ("*",)) -> Rule:
    return Rule(
        operations=frozenset(ops),
        groups=frozenset({"*"}),
        versions=frozenset({"*"}),
        resources=tuple((r.partition("/")[0], r.partition("/")[2]) for r in resources),
        scope=scope,
    )


@pytest.mark.parametrize(
    ("resources", "resource", "subresource", "expected"),
    [
        (["*"], "widgets", "", True),
        (["*"], "widgets", "status", False),
        (["*/*"], "widgets", "status", True),
        (["widgets/*"], "widgets", "status", True),
        (["widgets/*"], "gadgets", "status", False),
        (["*/status"], "gadgets", "status", True),
        (["*/status"], "gadgets", "", False),
        (["widgets"], "widgets", "status", False),
    ],
)
def test_rules_match_resources_and_subresources(
    resources: list[str], resource: str, subresource: str, expected: bool
) -> None:
    got = rule_matches(rule(resources), "UPDATE", "g", "v1", resource, subresource, "default")
    assert got is expected


def test_rule_scopes_and_operations() -> None:
    namespaced, cluster = rule(["*"], "Namespaced"), rule(["*"], "Cluster")
    assert rule_matches(namespaced, "CREATE", "g", "v1", "widgets", "", "default")
    assert not rule_matches(namespaced, "CREATE", "g", "v1", "nodes", "", "")
    assert rule_matches(cluster, "CREATE", "g", "v1", "nodes", "", "")
    # A Namespace is cluster-scoped, though requests for it name it as their namespace.
    assert rule_matches(cluster, "CREATE", "", "v1", "namespaces", "", "team-a")
    assert not rule_matches(namespaced, "CREATE", "", "v1", "namespaces", "", "team-a")
    creates = rule(["*"], ops=("CREATE",))
    assert not rule_matches(creates, "DELETE", "g", "v1", "widgets", "", "default")


def test_label_selectors_are_validated_as_kube_does() -> None:
    causes = label_selector_causes(
        {
            "matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
                {"key": "c", "operator": "Near", "values": ["x"]},
            ]
        },
        "s",
    )
    assert rendered(causes) == [
        "s.matchExpressions[0].values: Required value: must be specified when `operator` is "
        "'In' or 'NotIn'",
        "s.matchExpressions[1].values: Forbidden: may not be specified when `operator` is "
        "'Exists' or 'DoesNotExist'",
        's.matchExpressions[2].operator: Invalid value: "Near": not a valid selector operator',
    ]


@pytest.mark.parametrize(
    ("answer", "mutating", "message"),
    [
        ({}, True, "webhook response was absent"),
        ({"response": {"uid": "other"}}, True, 'expected response.uid="u", got "other"'),
        (
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
             "response": {"uid": "u"}},
            True,
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got "
            "admission.k8s.io/v1beta1, Kind=AdmissionReview",
        ),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
             "response": {"uid": "u", "patch": "W10="}},
            True,
            "webhook returned response.patch but not response.patchType",
        ),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
             "response": {"uid": "u", "patch": "W10=", "patchType": "JSONPatch"}},
            False,
            "validating webhook may not return response.patch",
        ),
    ],
)  # fmt: skip
def test_admission_answers_are_verified(answer: dict, mutating: bool, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        _verify(answer, "admission.k8s.io/v1", "u", mutating=mutating)


def test_refusals_keep_the_webhooks_status_with_kubes_prefix() -> None:
    denied = Denied("v.example.com", {"code": 422, "reason": "Invalid", "message": "no",
                                      "details": {"causes": [{"field": "spec.x"}]}})  # fmt: skip
    assert denied.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'admission webhook "v.example.com" denied the request: no',
        "reason": "Invalid",
        "code": 422,
        "details": {"causes": [{"field": "spec.x"}]},
    }
    low = Denied("v.example.com", {"code": 200, "reason": "NotAllowed"})
    assert (low.code, low.message) == (
        400,
        'admission webhook "v.example.com" denied the request: NotAllowed',
    )
