"""Which admission webhooks a request calls, as kube-apiserver decides it.

A webhook of a Mutating- or ValidatingWebhookConfiguration is compiled once into a
:class:`Hook`; :meth:`Hook.selects` and :func:`rule_matches` then answer for each request what
``generic/webhook.go`` (``ShouldCallHook``) and ``predicates/{rules,namespace,object}``
answer:

- **rules**: an operation (``*`` for all), an API group, a version, a resource with its
  subresource (``*`` every resource, ``*/*`` every resource and subresource, ``widgets/*`` every
  subresource of widgets, ``*/status`` every status subresource), and a scope (``Cluster``,
  ``Namespaced`` or ``*``; a Namespace object is cluster-scoped);
- **namespaceSelector** on the labels of the request's namespace (of the object itself for a
  Namespace; cluster-scoped objects always match), **objectSelector** on the labels of the new
  or the old object;
- **matchConditions**: CEL expressions over ``object``, ``oldObject`` and ``request``, all of
  which must be true; a false one skips the webhook, errors fail the request with 403 unless
  the failure policy is ``Ignore``. kube-apiserver's ``authorizer`` variable has no meaning
  here (one admin identity, no authorizer): configurations that use it are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arges.apiserver.cel import Program, compile_expr, identifiers
from arges.apiserver.celext import FUNCTIONS
from arges.apiserver.celnodes import CompileError
from arges.apiserver.celtypes import BOOL, DYN, STRING, Type, list_type, map_type
from arges.apiserver.celvalidator import PER_CALL_LIMIT
from arges.apiserver.celvalues import EvalError, Meter
from arges.apiserver.errors import Cause
from arges.apiserver.validation import invalid, labels_causes, required
from arges.apiserver.webhookclient import REVIEW_VERSIONS, ClientConfig
from arges.names import label_key_errors, qualified_name_errors
from arges.selectors import LabelSelector, SelectorError, selector_from_label_selector

_GVK = Type("object", fields={"group": STRING, "version": STRING, "kind": STRING})
_GVR = Type("object", fields={"group": STRING, "version": STRING, "resource": STRING})
_USER = Type(
    "object",
    fields={
        "username": STRING,
        "uid": STRING,
        "groups": list_type(STRING),
        "extra": map_type(list_type(STRING)),
    },
)
REQUEST_TYPE = Type(
    "object",
    fields={
        "kind": _GVK,
        "resource": _GVR,
        "subResource": STRING,
        "requestKind": _GVK,
        "requestResource": _GVR,
        "requestSubResource": STRING,
        "name": STRING,
        "namespace": STRING,
        "operation": STRING,
        "userInfo": _USER,
        "dryRun": BOOL,
        "options": DYN,
    },
)
"""``kubernetes.AdmissionRequest`` as match conditions see it (plugin/cel/compile.go)."""
_DECLARATIONS = {"object": DYN, "oldObject": DYN, "request": REQUEST_TYPE}


@dataclass(frozen=True)
class Rule:
    """One ``RuleWithOperations``; ``resources`` as (resource, subresource) pairs."""

    operations: frozenset[str]
    groups: frozenset[str]
    versions: frozenset[str]
    resources: tuple[tuple[str, str], ...]
    scope: str


def rule_matches(
    rule: Rule,
    operation: str,
    group: str,
    version: str,
    resource: str,
    subresource: str,
    namespace: str,
) -> bool:
    """Whether ``rule`` covers the request (``predicates/rules/rules.go``)."""
    if "*" not in rule.operations and operation not in rule.operations:
        return False
    if "*" not in rule.groups and group not in rule.groups:
        return False
    if "*" not in rule.versions and version not in rule.versions:
        return False
    if not any(res in ("*", resource) and sub in ("*", subresource) for res, sub in rule.resources):
        return False
    is_namespace = resource == "namespaces" and not group
    if rule.scope == "Namespaced":
        return not is_namespace and bool(namespace)
    if rule.scope == "Cluster":
        return is_namespace or not namespace
    return True


@dataclass(frozen=True)
class Condition:
    """A compiled ``matchConditions`` entry."""

    name: str
    program: Program


@dataclass(frozen=True)
class Hook:
    """One webhook of a configuration, ready to match and call.

    ``uid`` tells webhooks apart across configurations (``<config>/<name>/<index>``), as
    kube-apiserver's reinvocation bookkeeping does.
    """

    uid: str
    name: str
    configuration: str
    mutating: bool
    client: ClientConfig
    rules: tuple[Rule, ...]
    fail: bool
    equivalent: bool
    namespace_selector: LabelSelector
    object_selector: LabelSelector
    timeout: float
    review_version: str
    reinvoke: bool
    conditions: tuple[Condition, ...]

    def namespace_matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether the namespaceSelector admits a namespace with ``labels`` (None for
        cluster-scoped objects other than Namespaces, which every namespaceSelector admits)."""
        return labels is None or self.namespace_selector.matches(labels)

    def object_matches(self, obj: Mapping[str, Any] | None, old: Mapping[str, Any] | None) -> bool:
        """Whether the objectSelector admits the new or the old object's labels."""
        if not self.object_selector.requirements:
            return True
        return any(
            isinstance(o, Mapping)
            and self.object_selector.matches(((o.get("metadata") or {}).get("labels")) or {})
            for o in (obj, old)
        )

    def conditions_hold(self, variables: dict[str, Any]) -> tuple[bool, list[str]]:
        """Whether every match condition is true, and the evaluation errors.

        A false condition decides at once (errors do not matter then), as in
        ``matchconditions/matcher.go``.
        """
        errors: list[str] = []
        for condition in self.conditions:
            try:
                value = condition.program.evaluate(variables, Meter(PER_CALL_LIMIT))
            except EvalError as exc:
                errors.append(f"expression '{condition.program.source}' resulted in error: {exc}")
                continue
            if value is False:
                return False, []
        return not errors, errors


class Unsupported(CompileError):
    """An expression that compiles but cannot be a match condition (kube's detail as is)."""


def compile_condition(expression: str) -> Program:
    """A match condition's expression, type-checked as kube-apiserver checks it.

    Raises:
        CompileError: it does not compile, does not give a bool, or uses ``authorizer``.
    """
    if "authorizer" in identifiers(expression):
        raise Unsupported(
            "the authorizer variable is not supported by the Arges API server (it has one "
            "admin identity and no authorizer to ask)"
        )
    program = compile_expr(expression, _DECLARATIONS, FUNCTIONS)
    if program.result.kind != "bool":
        raise Unsupported("must evaluate to bool")
    return program


def hooks_of(config: Mapping[str, Any], *, mutating: bool) -> list[Hook]:
    """The webhooks of a stored (valid, defaulted) configuration, in order."""
    name = str((config.get("metadata") or {}).get("name", ""))
    out = []
    for i, spec in enumerate(config.get("webhooks") or []):
        review = next(v for v in spec.get("admissionReviewVersions") or [] if v in REVIEW_VERSIONS)
        out.append(
            Hook(
                uid=f"{name}/{spec['name']}/{i}",
                name=spec["name"],
                configuration=name,
                mutating=mutating,
                client=ClientConfig.parse(spec.get("clientConfig") or {}),
                rules=tuple(_rule(r) for r in spec.get("rules") or []),
                fail=spec.get("failurePolicy", "Fail") == "Fail",
                equivalent=spec.get("matchPolicy", "Equivalent") == "Equivalent",
                namespace_selector=selector_from_label_selector(
                    spec.get("namespaceSelector") or {}
                ),
                object_selector=selector_from_label_selector(spec.get("objectSelector") or {}),
                timeout=float(spec.get("timeoutSeconds") or 10),
                review_version=review,
                reinvoke=spec.get("reinvocationPolicy") == "IfNeeded",
                conditions=tuple(
                    Condition(c["name"], compile_condition(c["expression"].strip()))
                    for c in spec.get("matchConditions") or []
                ),
            )
        )
    return out


def _rule(spec: Mapping[str, Any]) -> Rule:
    resources = []
    for text in spec.get("resources") or []:
        res, _, sub = str(text).partition("/")
        resources.append((res, sub))
    return Rule(
        operations=frozenset(spec.get("operations") or []),
        groups=frozenset(spec.get("apiGroups") or []),
        versions=frozenset(spec.get("apiVersions") or []),
        resources=tuple(resources),
        scope=str(spec.get("scope") or "*"),
    )


# Validation of what compiles into hooks (pkg/apis/admissionregistration/validation).


def label_selector_causes(selector: Any, field: str) -> list[Cause]:
    """``ValidateLabelSelector`` for a ``namespaceSelector`` or ``objectSelector``."""
    if not isinstance(selector, Mapping):
        return []
    causes = labels_causes(selector.get("matchLabels"), f"{field}.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        where = f"{field}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                causes.append(
                    required(
                        f"{where}.values",
                        "Required value: must be specified when `operator` is 'In' or 'NotIn'",
                    )
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                causes.append(
                    Cause(
                        f"{where}.values",
                        "Forbidden: may not be specified when `operator` is 'Exists' or "
                        "'DoesNotExist'",
                        "FieldValueForbidden",
                    )
                )
        else:
            causes.append(invalid(f"{where}.operator", op, "not a valid selector operator"))
        key = str(expr.get("key") or "")
        causes += [invalid(f"{where}.key", key, why) for why in label_key_errors(key)]
    try:
        selector_from_label_selector(selector)
    except SelectorError as exc:
        if not causes:
            causes.append(invalid(field, "", exc.message))
    return causes


def condition_causes(conditions: Any, field: str) -> list[Cause]:
    """``validateMatchConditions``: at most 64, named uniquely, each compiling to a bool."""
    if not isinstance(conditions, list):
        return []
    causes: list[Cause] = []
    if len(conditions) > 64:
        causes.append(
            Cause(
                field,
                f"Too many: {len(conditions)}: must have at most 64 items",
                "FieldValueTooMany",
            )
        )
    names: set[str] = set()
    for i, condition in enumerate(conditions):
        where = f"{field}[{i}]"
        expression = str(condition.get("expression") or "").strip()
        if not expression:
            causes.append(required(f"{where}.expression"))
        else:
            try:
                compile_condition(expression)
            except Unsupported as exc:
                causes.append(invalid(f"{where}.expression", expression, str(exc)))
            except CompileError as exc:
                causes.append(
                    invalid(f"{where}.expression", expression, f"compilation failed: {exc}")
                )
        name = str(condition.get("name") or "")
        if not name:
            causes.append(required(f"{where}.name"))
        else:
            causes += [invalid(f"{where}.name", name, why) for why in qualified_name_errors(name)]
            if name in names:
                causes.append(
                    Cause(f"{where}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate")
                )
            names.add(name)
    return causes
