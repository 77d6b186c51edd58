"""CRD validation rules (``x-kubernetes-validations``): checked at CRD creation, run on writes.

This is kube-apiserver's ``apiextensions-apiserver/pkg/apiserver/schema/cel`` (validation.go,
compilation.go) and the rule checks of ``apis/apiextensions/validation/validation.go``:

- At CRD creation every rule is compiled against the CEL type of its schema node (``self``;
  ``oldSelf`` too, an ``optional`` when ``optionalOldSelf``), must give a bool, and is refused
  with kube's wording when it does not compile (``compilation failed: ERROR: <input>:1:5:
  undefined field 'foo'``), when it uses ``oldSelf`` under a list that cannot correlate old
  and new items, or when its estimated cost (times how often the node can occur) exceeds
  10,000,000, or all rules together 100,000,000 (``StaticEstimatedCostLimit`` and
  ``StaticEstimatedCRDCostLimit``). Sizes the schema leaves unbounded are estimated from the
  3 MiB request limit, as kube-apiserver does, so a rule over an unbounded list is refused.
- On create, update and status update each rule runs at its node, for every value there:
  every element of a list and value of a map under it; nulls are skipped. Transition rules
  (those using ``oldSelf``) run only on update and only where the old value can be found
  (same property, same key of a map, same map key of a ``list-type: map`` list), unless
  ``optionalOldSelf`` is set. A rule that is false becomes a cause at its node (or at its
  ``fieldPath``) with its ``reason`` (``FieldValueInvalid`` when none), its
  ``messageExpression``'s result, its ``message``, or ``failed rule: <rule>``.
- Each call may spend 1,000,000 cost units and a whole object 10,000,000 (``PerCallLimit``,
  ``RuntimeCELCostBudget``); past them validation stops with kube's messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from arges.apiserver.cel import Program, compile_expr
from arges.apiserver.celext import FUNCTIONS
from arges.apiserver.celnodes import CompileError
from arges.apiserver.celtypes import Type, max_items, schema_type
from arges.apiserver.errors import Cause

STATIC_RULE_LIMIT = 10_000_000
STATIC_CRD_LIMIT = 100_000_000
REASONS = ("FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired")


# Paths.


def parse_field_path(path: str, schema: dict[str, Any]) -> list[tuple[str, bool]] | None:
    """A rule's ``fieldPath`` (``.spec.x``, ``['a.b']``) as (name, is-map-key) steps.

    None when it does not name a field of ``schema`` (``ValidFieldPath`` in kube).
    """
    steps: list[tuple[str, bool]] = []
    node = schema
    i = 0
    while i < len(path):
        if path[i] == ".":
            j = i + 1
            while j < len(path) and path[j] not in ".[":
                j += 1
            name = path[i + 1 : j]
            i = j
        elif path.startswith("['", i):
            end = path.find("']", i + 2)
            if end < 0:
                return None
            name = path[i + 2 : end].replace("\\'", "'").replace("\\\\", "\\")
            i = end + 2
        else:
            return None
        if not name:
            return None
        props = node.get("properties")
        additional = node.get("additionalProperties")
        if props is not None:
            if name not in props:
                return None
            node = props[name]
            steps.append((name, False))
        elif isinstance(additional, dict):
            node = additional
            steps.append((name, True))
        else:
            return None
    return steps


# Compilation.


@dataclass
class Rule:
    """One compiled ``x-kubernetes-validations`` entry."""

    spec: dict[str, Any]
    program: Program
    message: Program | None
    transition: bool
    optional_old_self: bool
    field_steps: list[tuple[str, bool]]

    @property
    def text(self) -> str:
        """What kube names the rule by in messages: its message, else its expression."""
        message = str(self.spec.get("message") or "").strip()
        return message or str(self.spec.get("rule", "")).strip()


@dataclass
class Node:
    """The rules of one schema node and of the nodes under it."""

    schema_type: str
    rules: list[Rule] = field(default_factory=list)
    properties: dict[str, Node] = field(default_factory=dict)
    items: Node | None = None
    additional: Node | None = None
    map_keys: tuple[str, ...] = ()
    """``x-kubernetes-list-map-keys`` when items correlate by key (``list-type: map``)."""

    def empty(self) -> bool:
        """Whether no rule is here or below."""
        return not (self.rules or self.properties or self.items or self.additional)


def go_rule(spec: dict[str, Any]) -> str:
    """A rule as Go's ``%#v`` prints ``apiextensions.ValidationRule`` in kube's messages."""

    def q(value: Any) -> str:
        return json.dumps(str(value or ""), ensure_ascii=False)

    reason = (
        "(*apiextensions.FieldValueErrorReason)(nil)"
        if spec.get("reason") is None
        else f"(*apiextensions.FieldValueErrorReason)({q(spec['reason'])})"
    )
    optional = (
        "(*bool)(nil)"
        if spec.get("optionalOldSelf") is None
        else f"(*bool)({str(bool(spec['optionalOldSelf'])).lower()})"
    )
    return (
        f"apiextensions.ValidationRule{{Rule:{q(spec.get('rule'))}, "
        f"Message:{q(spec.get('message'))}, MessageExpression:{q(spec.get('messageExpression'))}, "
        f"Reason:{reason}, FieldPath:{q(spec.get('fieldPath'))}, OptionalOldSelf:{optional}}}"
    )


@dataclass
class _Context:
    causes: list[Cause] = field(default_factory=list)
    total: int = 0
    costs: list[tuple[str, int]] = field(default_factory=list)


def compile_rules(schema: dict[str, Any], path: str) -> tuple[Node | None, list[Cause]]:
    """Compile every rule under ``schema`` (an ``openAPIV3Schema`` at ``path``).

    Returns the validator tree (None when there are no rules) and the causes that make the
    CRD invalid, with field paths under ``path``.
    """
    ctx = _Context()
    node = _compile(schema, path, ctx, resource_root=True, cardinality=1, uncorrelatable=None)
    if ctx.total > STATIC_CRD_LIMIT:
        for where, cost in sorted(ctx.costs, key=lambda c: -c[1])[:4]:
            if cost * 100 > STATIC_CRD_LIMIT:
                ctx.causes.append(
                    Cause(
                        where,
                        "Forbidden: contributed to estimated rule cost total exceeding cost "
                        "limit for entire OpenAPIv3 schema",
                        "FieldValueForbidden",
                    )
                )
        ctx.causes.append(
            Cause(
                path,
                "Forbidden: "
                + cost_message(
                    "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 "
                    "schema",
                    ctx.total,
                    STATIC_CRD_LIMIT,
                ),
                "FieldValueForbidden",
            )
        )
    return (node if node is not None and not node.empty() else None), ctx.causes


def cost_message(name: str, cost: int, limit: int) -> str:
    """kube's ``getCostErrorMessage``."""
    factor = cost / limit
    if factor > 100:
        shown = "more than 100x"
    elif factor < 1.5:
        shown = f"{factor:f}x"
    else:
        shown = f"{factor:.1f}x"
    return (
        f"{name} exceeds budget by factor of {shown} (try simplifying the rule, or adding "
        "maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )


def _compile(
    schema: Any,
    path: str,
    ctx: _Context,
    *,
    resource_root: bool,
    cardinality: int,
    uncorrelatable: str | None,
) -> Node | None:
    if not isinstance(schema, dict):
        return None
    node = Node(str(schema.get("type", "")))
    for key, sub in (schema.get("properties") or {}).items():
        child = _compile(
            sub,
            f"{path}.properties[{key}]",
            ctx,
            resource_root=bool(isinstance(sub, dict) and sub.get("x-kubernetes-embedded-resource")),
            cardinality=cardinality,
            uncorrelatable=uncorrelatable,
        )
        if child is not None and not child.empty():
            node.properties[key] = child
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        size = max_items(schema, "maxProperties", additional, 4)
        child = _compile(
            additional,
            f"{path}.additionalProperties",
            ctx,
            resource_root=bool(additional.get("x-kubernetes-embedded-resource")),
            cardinality=cardinality * size,
            uncorrelatable=uncorrelatable,
        )
        if child is not None and not child.empty():
            node.additional = child
    items = schema.get("items")
    if isinstance(items, dict):
        size = max_items(schema, "maxItems", items, 1)
        is_map = schema.get("x-kubernetes-list-type") == "map"
        child = _compile(
            items,
            f"{path}.items",
            ctx,
            resource_root=bool(items.get("x-kubernetes-embedded-resource")),
            cardinality=cardinality * size,
            uncorrelatable=uncorrelatable if is_map or uncorrelatable else path,
        )
        if child is not None and not child.empty():
            node.items = child
            if is_map:
                node.map_keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
    rules = schema.get("x-kubernetes-validations")
    if isinstance(rules, list) and rules:
        self_type = schema_type(schema, resource_root=resource_root)
        for i, spec in enumerate(rules):
            where = f"{path}.x-kubernetes-validations[{i}]"
            rule = _compile_rule(spec, schema, self_type, where, ctx, cardinality, uncorrelatable)
            if rule is not None:
                node.rules.append(rule)
    return node


def _compile_rule(
    spec: Any,
    schema: dict[str, Any],
    self_type: Type,
    where: str,
    ctx: _Context,
    cardinality: int,
    uncorrelatable: str | None,
) -> Rule | None:
    if not isinstance(spec, dict):
        ctx.causes.append(Cause(where, "Invalid value: must be an object"))
        return None
    before = len(ctx.causes)
    rule_text = str(spec.get("rule") or "")
    message = spec.get("message")
    message_text = str(message or "")
    if not rule_text.strip():
        ctx.causes.append(
            Cause(f"{where}.rule", "Required value: rule is not specified", "FieldValueRequired")
        )
        return None
    if message is not None and message_text and not message_text.strip():
        ctx.causes.append(
            Cause(
                f"{where}.message",
                f"Invalid value: {json.dumps(message_text)}: message must be non-empty if "
                "specified",
            )
        )
    elif "\n" in message_text.strip() or "\r" in message_text.strip():
        ctx.causes.append(
            Cause(
                f"{where}.message",
                f"Invalid value: {json.dumps(message_text)}: message must not contain line breaks",
            )
        )
    elif ("\n" in rule_text.strip() or "\r" in rule_text.strip()) and not message_text.strip():
        ctx.causes.append(
            Cause(
                f"{where}.message",
                "Required value: message must be specified if rule contains line breaks",
                "FieldValueRequired",
            )
        )
    expression = spec.get("messageExpression")
    if expression is not None and str(expression) and not str(expression).strip():
        ctx.causes.append(
            Cause(
                f"{where}.messageExpression",
                "Required value: messageExpression must be non-empty if specified",
                "FieldValueRequired",
            )
        )
    reason = spec.get("reason")
    if reason is not None and reason not in REASONS:
        ctx.causes.append(
            Cause(
                f"{where}.reason",
                f'Unsupported value: "{reason}": supported values: '
                + ", ".join(f'"{r}"' for r in REASONS),
                "FieldValueNotSupported",
            )
        )
    steps: list[tuple[str, bool]] = []
    field_path = spec.get("fieldPath")
    if field_path:
        parsed = parse_field_path(str(field_path).strip(), schema)
        if parsed is None:
            ctx.causes.append(
                Cause(
                    f"{where}.fieldPath",
                    f"Invalid value: {json.dumps(str(field_path))}: fieldPath must be a valid path",
                )
            )
        else:
            steps = parsed
    if len(ctx.causes) > before:
        return None
    optional_old_self = bool(spec.get("optionalOldSelf"))
    old_type = Type("optional", self_type) if optional_old_self else self_type
    declarations = {"self": self_type, "oldSelf": old_type}
    try:
        program = compile_expr(rule_text, declarations, FUNCTIONS)
    except CompileError as exc:
        ctx.causes.append(
            Cause(f"{where}.rule", f"Invalid value: {go_rule(spec)}: compilation failed: {exc}")
        )
        return None
    if program.result.kind not in ("bool", "dyn"):
        ctx.causes.append(
            Cause(
                f"{where}.rule",
                f"Invalid value: {go_rule(spec)}: cel expression must evaluate to a bool",
            )
        )
        return None
    cost = min(program.max_cost * cardinality, 2**64 - 1)
    if cost > STATIC_RULE_LIMIT:
        ctx.causes.append(
            Cause(
                f"{where}.rule",
                "Forbidden: " + cost_message("estimated rule cost", cost, STATIC_RULE_LIMIT),
                "FieldValueForbidden",
            )
        )
    ctx.total += cost
    ctx.costs.append((f"{where}.rule", cost))
    message_program = None
    if expression is not None and str(expression).strip():
        try:
            message_program = compile_expr(str(expression), declarations, FUNCTIONS)
        except CompileError as exc:
            ctx.causes.append(
                Cause(
                    f"{where}.messageExpression",
                    f"Invalid value: {go_rule(spec)}: messageExpression compilation failed: {exc}",
                )
            )
        else:
            if message_program.result.kind not in ("string", "dyn"):
                ctx.causes.append(
                    Cause(
                        f"{where}.messageExpression",
                        f"Invalid value: {go_rule(spec)}: messageExpression must evaluate to "
                        "a string",
                    )
                )
            message_cost = min(message_program.max_cost * cardinality, 2**64 - 1)
            if message_cost > STATIC_RULE_LIMIT:
                ctx.causes.append(
                    Cause(
                        f"{where}.messageExpression",
                        "Forbidden: "
                        + cost_message(
                            "estimated messageExpression cost", message_cost, STATIC_RULE_LIMIT
                        ),
                        "FieldValueForbidden",
                    )
                )
            ctx.total += message_cost
    transition = "oldSelf" in program.references
    if transition and uncorrelatable is not None:
        ctx.causes.append(
            Cause(
                f"{where}.rule",
                f"Invalid value: {json.dumps(rule_text)}: oldSelf cannot be used on the "
                f"uncorrelatable portion of the schema within {uncorrelatable}",
            )
        )
    elif not transition and spec.get("optionalOldSelf") is not None:
        ctx.causes.append(
            Cause(
                f"{where}.optionalOldSelf",
                f"Invalid value: {str(bool(spec['optionalOldSelf'])).lower()}: may not be set "
                "if oldSelf is not used in rule",
            )
        )
    if len(ctx.causes) > before:
        return None
    return Rule(spec, program, message_program, transition, optional_old_self, steps)
