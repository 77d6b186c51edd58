"""MutatingWebhookConfiguration and ValidatingWebhookConfiguration (admissionregistration/v1).

Built-in, cluster-scoped kinds with the schema, defaults, printer columns and validation of
kube-apiserver (``pkg/apis/admissionregistration/v1/defaults.go``, ``.../validation``,
``pkg/registry/admissionregistration/*/strategy.go``): a webhook defaults to
``failurePolicy: Fail``, ``matchPolicy: Equivalent``, empty (match-all) namespace and object
selectors, ``timeoutSeconds: 10``, rule ``scope: "*"``, service port 443 and, when mutating,
``reinvocationPolicy: Never``; ``metadata.generation`` moves when the webhooks change.
Validation refuses what kube-apiserver refuses at creation, with its messages; the
:mod:`~arges.apiserver.admission` chain calls what is stored.
"""

from __future__ import annotations

from typing import Any

from arges.apiserver.decoding import base64_error_offset
from arges.apiserver.errors import BadRequest, Cause
from arges.apiserver.metaschema import INT32, STRING, root_schema
from arges.apiserver.patch import OBJECT_META_PATCH
from arges.apiserver.resources import PrinterColumn, ResourceType, Strategy, Version
from arges.apiserver.schema import Schema
from arges.apiserver.tables import age_column, name_column
from arges.apiserver.validation import invalid, required
from arges.apiserver.webhookclient import (
    CLIENT_CONFIG,
    client_config_causes,
    review_versions_causes,
)
from arges.apiserver.webhookmatch import condition_causes, label_selector_causes
from arges.names import dns1123_subdomain_errors

GROUP = "admissionregistration.k8s.io"
MUTATING = "mutatingwebhookconfigurations"
VALIDATING = "validatingwebhookconfigurations"
EXEMPT = frozenset(
    {
        MUTATING,
        VALIDATING,
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "mutatingadmissionpolicies",
        "mutatingadmissionpolicybindings",
    }
)
"""Resources of this group no webhook is called for (``IsExemptAdmissionConfigurationResource``),
so that a broken webhook can always be removed."""

_STRINGS: dict[str, Any] = {"type": "array", "items": STRING, "x-kubernetes-list-type": "atomic"}

LABEL_SELECTOR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": STRING},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {"key": STRING, "operator": STRING, "values": _STRINGS},
            },
        },
    },
    "x-kubernetes-map-type": "atomic",
}

_RULE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "operations": _STRINGS,
        "apiGroups": _STRINGS,
        "apiVersions": _STRINGS,
        "resources": _STRINGS,
        "scope": {**STRING, "default": "*"},
    },
}


def _webhook(mutating: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "name": {**STRING, "description": "The webhook's fully qualified name."},
        "clientConfig": CLIENT_CONFIG,
        "rules": {"type": "array", "items": _RULE, "x-kubernetes-list-type": "atomic"},
        "failurePolicy": {**STRING, "default": "Fail"},
        "matchPolicy": {**STRING, "default": "Equivalent"},
        "namespaceSelector": {**LABEL_SELECTOR, "default": {}},
        "objectSelector": {**LABEL_SELECTOR, "default": {}},
        "sideEffects": STRING,
        "timeoutSeconds": {**INT32, "default": 10},
        "admissionReviewVersions": _STRINGS,
        "matchConditions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "expression"],
                "properties": {"name": STRING, "expression": STRING},
            },
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    }
    if mutating:
        properties["reinvocationPolicy"] = {**STRING, "default": "Never"}
    return {"type": "object", "required": ["name", "clientConfig"], "properties": properties}


def configuration_schema(mutating: bool) -> dict[str, Any]:
    """The schema of a Mutating- (``mutating``) or ValidatingWebhookConfiguration."""
    kind = "mutating" if mutating else "validating"
    return root_schema(
        f"{kind.capitalize()}WebhookConfiguration describes the configuration of an admission "
        f"webhook that accepts or rejects{' and may change' if mutating else ''} objects.",
        webhooks={
            "type": "array",
            "description": f"The {kind} webhooks and the resources and operations they affect.",
            "items": _webhook(mutating),
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )


def _not_supported(field: str, value: Any, supported: tuple[str, ...]) -> Cause:
    return Cause(
        field,
        f'Unsupported value: "{value}": supported values: '
        + ", ".join(f'"{s}"' for s in supported),
        "FieldValueNotSupported",
    )


class WebhookConfigurationStrategy(Strategy):
    """``pkg/registry/admissionregistration/{mutating,validating}webhookconfiguration``."""

    strategic = {**OBJECT_META_PATCH, "webhooks": "name"}
    unconditional_update = True

    def __init__(self, kind: str, *, mutating: bool) -> None:
        self.kind = kind
        self.mutating = mutating

    def _decode(self, obj: dict[str, Any]) -> None:
        # caBundle is a Go []byte: a value that is no base64 fails decoding (400) first.
        for hook in obj.get("webhooks") or []:
            bundle = (
                (hook.get("clientConfig") or {}).get("caBundle") if isinstance(hook, dict) else None
            )
            at = base64_error_offset(bundle) if isinstance(bundle, str) else None
            if at is not None:
                raise BadRequest(
                    f'{self.kind} in version "v1" cannot be handled as a {self.kind}: illegal '
                    f"base64 data at input byte {at}"
                )

    def prepare_for_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        self._decode(obj)

    def prepare_for_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> None:
        self._decode(new)

    def validate(self, rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
        causes: list[Cause] = []
        names: set[str] = set()
        for i, hook in enumerate(obj.get("webhooks") or []):
            field = f"webhooks[{i}]"
            causes += self._webhook_causes(hook, field)
            causes += review_versions_causes(
                hook.get("admissionReviewVersions"), f"{field}.admissionReviewVersions"
            )
            name = hook.get("name") or ""
            if name in names:
                causes.append(
                    Cause(f"{field}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate")
                )
            elif name:
                names.add(name)
        return causes

    def _webhook_causes(self, hook: dict[str, Any], field: str) -> list[Cause]:
        causes = fully_qualified_name_causes(str(hook.get("name") or ""), f"{field}.name")
        for j, rule in enumerate(hook.get("rules") or []):
            causes += _rule_causes(rule, f"{field}.rules[{j}]")
        for key, supported in (
            ("failurePolicy", ("Fail", "Ignore")),
            ("matchPolicy", ("Equivalent", "Exact")),
        ):
            if hook.get(key) not in supported:
                causes.append(_not_supported(f"{field}.{key}", hook.get(key), supported))
        side_effects = hook.get("sideEffects")
        if side_effects is None:
            causes.append(
                required(
                    f"{field}.sideEffects", "Required value: must specify one of None, NoneOnDryRun"
                )
            )
        elif side_effects not in ("None", "NoneOnDryRun"):
            causes.append(
                _not_supported(f"{field}.sideEffects", side_effects, ("None", "NoneOnDryRun"))
            )
        timeout = hook.get("timeoutSeconds")
        if not isinstance(timeout, int) or not 1 <= timeout <= 30:
            causes.append(
                invalid(
                    f"{field}.timeoutSeconds",
                    timeout,
                    "the timeout value must be between 1 and 30 seconds",
                )
            )
        for key in ("namespaceSelector", "objectSelector"):
            causes += label_selector_causes(hook.get(key), f"{field}.{key}")
        if self.mutating and hook.get("reinvocationPolicy") not in ("IfNeeded", "Never"):
            causes.append(
                _not_supported(
                    f"{field}.reinvocationPolicy",
                    hook.get("reinvocationPolicy"),
                    ("IfNeeded", "Never"),
                )
            )
        causes += client_config_causes(hook.get("clientConfig"), f"{field}.clientConfig")
        causes += condition_causes(hook.get("matchConditions"), f"{field}.matchConditions")
        return causes


def fully_qualified_name_causes(name: str, field: str) -> list[Cause]:
    """``IsFullyQualifiedName``: a DNS subdomain of at least three segments."""
    if not name:
        return [required(field)]
    errors = dns1123_subdomain_errors(name)
    if errors:
        return [invalid(field, name, ",".join(errors))]
    if len(name.split(".")) < 3:
        return [
            invalid(
                field, name, "should be a domain with at least three segments separated by dots"
            )
        ]
    return []


_OPERATIONS = ("*", "CONNECT", "CREATE", "DELETE", "UPDATE")
_SCOPES = ("*", "Cluster", "Namespaced")


def _strings(value: list[str]) -> str:
    return "[]string{" + ", ".join(f'"{v}"' for v in value) + "}"


def _rule_causes(rule: dict[str, Any], field: str) -> list[Cause]:
    """``validateRuleWithOperations`` (subresources allowed)."""
    causes: list[Cause] = []
    operations = list(rule.get("operations") or [])
    if not operations:
        causes.append(required(f"{field}.operations"))
    if len(operations) > 1 and "*" in operations:
        causes.append(
            Cause(
                f"{field}.operations",
                f"Invalid value: {_strings(operations)}: if '*' is present, must not specify "
                "other operations",
            )
        )
    for i, op in enumerate(operations):
        if op not in _OPERATIONS:
            causes.append(_not_supported(f"{field}.operations[{i}]", op, _OPERATIONS))
    for key, what in (("apiGroups", "API groups"), ("apiVersions", "API versions")):
        values = list(rule.get(key) or [])
        if not values:
            causes.append(required(f"{field}.{key}"))
        if len(values) > 1 and "*" in values:
            causes.append(
                Cause(
                    f"{field}.{key}",
                    f"Invalid value: {_strings(values)}: if '*' is present, must not specify "
                    f"other {what}",
                )
            )
        if key == "apiVersions":
            causes += [required(f"{field}.{key}[{i}]") for i, v in enumerate(values) if v == ""]
    causes += _resources_causes(list(rule.get("resources") or []), f"{field}.resources")
    if rule.get("scope") not in _SCOPES:
        causes.append(_not_supported(f"{field}.scope", rule.get("scope"), _SCOPES))
    return causes


def _resources_causes(resources: list[str], field: str) -> list[Cause]:
    causes: list[Cause] = []
    if not resources:
        causes.append(required(field))
    wildcard_sub: set[str] = set()
    wildcard_res: set[str] = set()
    double = single = plain = False
    for i, text in enumerate(resources):
        if text == "":
            causes.append(required(f"{field}[{i}]"))
            continue
        double = double or text == "*/*"
        single = single or text == "*"
        if "/" not in text:
            plain = text != "*"
            continue
        res, sub = text.split("/", 1)
        if res in wildcard_sub:
            causes.append(
                invalid(f"{field}[{i}]", text, f"if '{res}/*' is present, must not specify {text}")
            )
        if sub in wildcard_res:
            causes.append(
                invalid(f"{field}[{i}]", text, f"if '*/{sub}' is present, must not specify {text}")
            )
        if sub == "*":
            wildcard_sub.add(res)
        if res == "*":
            wildcard_res.add(sub)
    if len(resources) > 1 and double:
        causes.append(
            Cause(
                field,
                f"Invalid value: {_strings(resources)}: if '*/*' is present, must not specify "
                "other resources",
            )
        )
    if single and plain:
        causes.append(
            Cause(
                field,
                f"Invalid value: {_strings(resources)}: if '*' is present, must not specify other "
                "resources without subresources",
            )
        )
    return causes


def _webhook_count(obj: dict[str, Any]) -> int:
    return len(obj.get("webhooks") or [])


def webhook_configuration_types() -> list[ResourceType]:
    """MutatingWebhookConfiguration and ValidatingWebhookConfiguration."""
    out = []
    for kind, plural, mutating in (
        ("MutatingWebhookConfiguration", MUTATING, True),
        ("ValidatingWebhookConfiguration", VALIDATING, False),
    ):
        out.append(
            ResourceType(
                group=GROUP,
                plural=plural,
                singular=plural[:-1],
                kind=kind,
                namespaced=False,
                categories=("api-extensions",),
                strategy=WebhookConfigurationStrategy(kind, mutating=mutating),
                versions=(
                    Version(
                        "v1",
                        Schema.compile(configuration_schema(mutating)),
                        storage=True,
                        columns=(
                            name_column(),
                            PrinterColumn(
                                "Webhooks",
                                "integer",
                                description="Webhooks indicates the number of webhooks in the "
                                "configuration",
                                compute=_webhook_count,
                            ),
                            age_column(),
                        ),
                    ),
                ),
            )
        )
    return out
