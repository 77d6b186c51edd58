"""Running a CRD's validation rules against objects, as kube-apiserver runs them.

This is ``apiextensions-apiserver/pkg/apiserver/schema/cel/validation.go``: each compiled rule
(:mod:`arges.apiserver.celrules`) runs at its schema node for every value there, every item
of a list and value of a map under it; nulls are skipped. Transition rules run only where the
old value can be found (same property, same map key, same key of a ``list-type: map`` list),
unless ``optionalOldSelf``. Each call may spend 1,000,000 cost units and a whole object
10,000,000 (``PerCallLimit``, ``RuntimeCELCostBudget``); past them validation stops with
kube's messages.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from arges.apiserver.celrules import Node, Rule
from arges.apiserver.celvalues import CostLimitExceeded, EvalError, Meter, Optional
from arges.apiserver.errors import Cause
from arges.apiserver.ratcheting import correlate, same
from arges.errors import ArgesError

PER_CALL_LIMIT = 1_000_000
RUNTIME_BUDGET = 10_000_000
MAX_MESSAGE_BYTES = 5 * 1024
BLOCKED = (
    "some validation rules were not checked because the object was invalid; correct the "
    "existing errors to complete validation"
)
OUT_OF_BUDGET = (
    "validation failed due to running out of cost budget, no further validation rules will be run"
)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _shown(path: str) -> str:
    """How kube prints a field path; the resource root is a nil path."""
    return path or "<nil>"


class _OutOfBudget(ArgesError):
    pass


_Anchor = tuple[Any, Any] | None


class Validator:
    """The rules of one version's schema, ready to run against objects."""

    def __init__(self, root: Node) -> None:
        self.root = root

    def validate(
        self,
        obj: Any,
        old: Any | None = None,
        prior: list[Cause] | None = None,
        *,
        ratchet: bool = False,
        warnings: list[str] | None = None,
    ) -> list[Cause]:
        """Causes for every rule ``obj`` breaks (``old`` is the stored object on update).

        As in kube-apiserver, rules are not run over an object that already has values of the
        wrong type (``prior`` causes of ``FieldValueTypeInvalid``): one cause says so instead.
        With ``ratchet`` (an update of a custom resource), a rule not using ``oldSelf`` that
        fails where the value is unchanged, or where its nearest correlated place above is
        (:mod:`~arges.apiserver.ratcheting`), is not a cause but a line of ``warnings``.
        """
        if any(c.reason == "FieldValueTypeInvalid" for c in prior or []):
            return [Cause("<nil>", f'Invalid value: "null": {BLOCKED}')]
        run = _Run(RUNTIME_BUDGET, warnings)
        anchor = (obj, old) if ratchet and old is not None else None
        with contextlib.suppress(_OutOfBudget):
            run.node(self.root, "", obj, old, anchor)
        return run.causes


class _Run:
    def __init__(self, budget: int, warnings: list[str] | None) -> None:
        self.remaining = budget
        self.causes: list[Cause] = []
        self.warnings = warnings

    def stop(self, path: str, schema_type: str, message: str) -> None:
        self.causes.append(
            Cause(_shown(path), f"Invalid value: {json.dumps(schema_type)}: {message}")
        )
        raise _OutOfBudget

    def node(self, node: Node, path: str, obj: Any, old: Any, anchor: _Anchor) -> None:
        """Run the rules at ``node`` and below. ``anchor``: the new and old value of the
        nearest correlated place at or above (None: nothing ratchets)."""
        if obj is None:
            return
        if node.rules:
            self.rules(node, path, obj, old, anchor)
        if isinstance(obj, dict):
            old_map = old if isinstance(old, dict) else {}

            def below(key: str) -> _Anchor:
                return (obj[key], old_map[key]) if anchor and key in old_map else anchor

            if node.additional is not None:
                for key, value in obj.items():
                    self.node(
                        node.additional, f"{path}[{key}]", value, old_map.get(key), below(key)
                    )
            for key, sub in node.properties.items():
                if key in obj:
                    self.node(sub, _child(path, key), obj[key], old_map.get(key), below(key))
        elif isinstance(obj, list) and node.items is not None:
            for i, (item, before) in enumerate(correlate(obj, old, node.map_keys)):
                item_anchor = (item, before) if anchor and before is not None else anchor
                self.node(node.items, f"{path}[{i}]", item, before, item_anchor)

    def rules(self, node: Node, path: str, obj: Any, old: Any, anchor: _Anchor) -> None:
        if self.remaining <= 0:
            self.stop(path, node.schema_type, OUT_OF_BUDGET)
        for rule in node.rules:
            if rule.transition and old is None and not rule.optional_old_self:
                continue
            variables = {
                "self": obj,
                "oldSelf": Optional(old, old is not None) if rule.optional_old_self else old,
            }
            meter = Meter(min(PER_CALL_LIMIT, self.remaining))
            try:
                result = rule.program.evaluate(variables, meter)
            except CostLimitExceeded:
                if meter.limit < PER_CALL_LIMIT:
                    self.stop(path, node.schema_type, OUT_OF_BUDGET)
                self.stop(
                    path,
                    node.schema_type,
                    f"'{CostLimitExceeded()}': no further validation rules will be run due to "
                    f"call cost exceeds limit for rule: {rule.text}",
                )
            except EvalError as exc:
                self.remaining -= meter.used
                if str(exc).startswith("no such overload"):
                    detail = (
                        f"'{exc}': call arguments did not match a supported operator, function "
                        f"or macro signature for rule: {rule.text}"
                    )
                else:
                    detail = f"{exc} evaluating rule: {rule.text}"
                self.causes.append(
                    Cause(_shown(path), f"Invalid value: {json.dumps(node.schema_type)}: {detail}")
                )
                continue
            self.remaining -= meter.used
            if result is True:
                continue
            if not isinstance(result, bool):
                self.causes.append(
                    Cause(
                        _shown(path),
                        f"Invalid value: {json.dumps(node.schema_type)}: no such overload "
                        f"evaluating rule: {rule.text}",
                    )
                )
                continue
            where = path
            for name, is_key in rule.field_steps:
                where = f"{where}[{name}]" if is_key else _child(where, name)
            detail = self.message(rule, variables) or _default_message(rule)
            cause = _cause(_shown(where), node.schema_type, detail, rule.spec)
            if not rule.transition and anchor is not None and same(*anchor):
                if self.warnings is not None:
                    self.warnings.append(cause.render())
                continue
            self.causes.append(cause)

    def message(self, rule: Rule, variables: dict[str, Any]) -> str | None:
        if rule.message is None:
            return None
        meter = Meter(min(PER_CALL_LIMIT, self.remaining))
        try:
            value = rule.message.evaluate(variables, meter)
        except CostLimitExceeded:
            return None
        except EvalError:
            self.remaining -= meter.used
            return None
        self.remaining -= meter.used
        if not isinstance(value, str):
            return None
        text = value.strip()
        if not text or "\n" in text or "\r" in text or len(text.encode()) > MAX_MESSAGE_BYTES:
            return None
        return text


def _default_message(rule: Rule) -> str:
    message = str(rule.spec.get("message") or "").strip()
    return message or f"failed rule: {str(rule.spec.get('rule', '')).strip()}"


def _cause(path: str, schema_type: str, detail: str, spec: dict[str, Any]) -> Cause:
    reason = spec.get("reason") or "FieldValueInvalid"
    if reason == "FieldValueForbidden":
        return Cause(path, f"Forbidden: {detail}", reason)
    if reason == "FieldValueRequired":
        return Cause(path, f"Required value: {detail}", reason)
    if reason == "FieldValueDuplicate":
        return Cause(path, f"Duplicate value: {json.dumps(schema_type)}", reason)
    return Cause(path, f"Invalid value: {json.dumps(schema_type)}: {detail}")
