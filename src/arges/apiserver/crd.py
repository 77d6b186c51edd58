"""The CustomResourceDefinition kind (``apiextensions.k8s.io/v1``) and what a CRD defines.

A CRD is validated as kube-apiserver validates it (``apiextensions-apiserver/pkg/apis/
apiextensions/validation``), for the parts this server implements: names, scope, versions
(exactly one storage version), structural schemas, printer columns and selectable fields.
Validation rules (``x-kubernetes-validations``) are compiled and checked here too
(:mod:`arges.apiserver.celrules`). Conversion webhooks are validated as kube-apiserver
validates them (``validateCustomResourceConversion``) and called by
:mod:`arges.apiserver.conversion`.

A created CRD is served at once; its names are accepted and it is marked ``Established``
just after, by the lifecycle controller (:func:`accepted_status`). :func:`resource_type` turns
it into the :class:`~arges.apiserver.resources.ResourceType` that the registry serves.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
from typing import Any

import jsonschema

from arges.apiserver.celrules import compile_rules
from arges.apiserver.celvalidator import Validator
from arges.apiserver.decoding import base64_error_offset
from arges.apiserver.errors import BadRequest, Cause
from arges.apiserver.listtypes import list_type_causes
from arges.apiserver.metaschema import STRING, desc, root_schema
from arges.apiserver.resources import (
    ConversionWebhook,
    PrinterColumn,
    ResourceType,
    Strategy,
    Version,
    version_priority,
)
from arges.apiserver.schema import Schema
from arges.apiserver.tables import JSONPathError, age_column, compile_path, name_column
from arges.apiserver.validation import forbidden, invalid, required
from arges.apiserver.webhookclient import (
    CLIENT_CONFIG,
    REVIEW_VERSIONS,
    ClientConfig,
    ca_bundle_error,
    client_config_causes,
    review_versions_causes,
)
from arges.names import dns1123_label_errors, dns1123_subdomain_errors

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
"""Held by every CRD until all of its custom resources are gone (as kube-apiserver does)."""

COLUMN_TYPES = ("integer", "number", "string", "boolean", "date")
RESERVED_GROUP_SUFFIXES = (".k8s.io", ".kubernetes.io")

_PRESERVE: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_NAMES: dict[str, Any] = {
    "type": "object",
    "required": ["plural", "kind"],
    "properties": {
        "plural": desc(STRING, "The plural name of the resource to serve (lowercase)."),
        "singular": desc(STRING, "The singular name of the resource (lowercase)."),
        "kind": desc(STRING, "The serialized kind of the resource (CamelCase)."),
        "listKind": desc(STRING, "The serialized kind of the list for this resource."),
        "shortNames": {"type": "array", "items": STRING},
        "categories": {"type": "array", "items": STRING},
    },
}
_VERSION: dict[str, Any] = {
    "type": "object",
    "required": ["name", "served", "storage"],
    "properties": {
        "name": STRING,
        "served": {"type": "boolean"},
        "storage": {"type": "boolean"},
        "deprecated": {"type": "boolean"},
        "deprecationWarning": STRING,
        "schema": {
            "type": "object",
            "properties": {"openAPIV3Schema": _PRESERVE},
        },
        "subresources": {
            "type": "object",
            "properties": {"status": _PRESERVE, "scale": _PRESERVE},
        },
        "additionalPrinterColumns": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "type", "jsonPath"],
                "properties": {
                    "name": STRING,
                    "type": STRING,
                    "format": STRING,
                    "description": STRING,
                    "priority": {"type": "integer", "format": "int32"},
                    "jsonPath": STRING,
                },
            },
        },
        "selectableFields": {
            "type": "array",
            "items": {"type": "object", "properties": {"jsonPath": STRING}},
        },
    },
}
CRD_SCHEMA = root_schema(
    "CustomResourceDefinition represents a resource that should be exposed on the API server. "
    "Its name MUST be in the format <.spec.name>.<.spec.group>.",
    spec={
        "type": "object",
        "required": ["group", "names", "scope", "versions"],
        "properties": {
            "group": desc(STRING, "The API group of the defined custom resource."),
            "names": _NAMES,
            "scope": desc(STRING, "Cluster or Namespaced."),
            "versions": {"type": "array", "items": _VERSION},
            "conversion": {
                "type": "object",
                "properties": {
                    "strategy": desc(STRING, "How objects change version: None or Webhook."),
                    "webhook": {
                        "type": "object",
                        "properties": {
                            "clientConfig": CLIENT_CONFIG,
                            "conversionReviewVersions": {
                                "type": "array",
                                "items": STRING,
                                "x-kubernetes-list-type": "atomic",
                            },
                        },
                    },
                },
            },
            "preserveUnknownFields": {"type": "boolean"},
        },
    },
    status={
        "type": "object",
        "properties": {
            "acceptedNames": _NAMES,
            "storedVersions": {"type": "array", "items": STRING},
            "conditions": {
                "type": "array",
                "nullable": True,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": STRING,
                        "status": STRING,
                        "lastTransitionTime": {"type": "string", "format": "date-time"},
                        "reason": STRING,
                        "message": STRING,
                    },
                },
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
    },
)
CRD_SCHEMA["required"] = ["spec"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CRDStrategy(Strategy):
    """Rules for CustomResourceDefinition objects (``customresourcedefinition/strategy.go``).

    A new CRD has no conditions and no accepted names yet: the lifecycle controller accepts
    its names and establishes it just after (:func:`accepted_status`), as kube-apiserver's
    naming and establishing controllers do. The cleanup finalizer is added by the first DELETE.
    """

    unconditional_update = True

    def __init__(self, builtin_resources: frozenset[tuple[str, str]]) -> None:
        self.builtin_resources = builtin_resources

    def prepare_for_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        _check_ca_bundle(obj)
        spec = obj.get("spec") or {}
        if isinstance(spec, dict):
            conversion = spec.get("conversion")
            if not isinstance(conversion, dict):
                spec["conversion"] = {"strategy": "None"}
            else:
                conversion.setdefault("strategy", "None")
        obj["status"] = {
            "conditions": None,
            "acceptedNames": {"plural": "", "kind": ""},
            "storedVersions": _stored_versions(obj, []),
        }

    def prepare_for_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> None:
        _check_ca_bundle(new)
        spec = new.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("conversion", {"strategy": "None"})
        status = copy.deepcopy(old.get("status") or {})
        status["storedVersions"] = _stored_versions(new, status.get("storedVersions") or [])
        new["status"] = status

    def begin_deletion(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)
        status = obj.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Terminating"]
        conditions.append(
            _condition(
                "Terminating",
                "True",
                "InstanceDeletionPending",
                "CustomResourceDefinition marked for deletion; CustomResource deletion will "
                "begin soon",
            )
        )
        status["conditions"] = conditions

    def validate(self, rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
        return validate_crd(obj, self.builtin_resources)

    def validate_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> list[Cause]:
        causes = []
        for field in ("scope", "group"):
            if (new.get("spec") or {}).get(field) != (old.get("spec") or {}).get(field):
                causes.append(
                    invalid(f"spec.{field}", new["spec"].get(field), "field is immutable")
                )
        return causes


def _check_ca_bundle(obj: dict[str, Any]) -> None:
    """Refuse a ``caBundle`` that is no base64 as kube-apiserver's decoder does (400)."""
    webhook = ((obj.get("spec") or {}).get("conversion") or {}).get("webhook") or {}
    bundle = (webhook.get("clientConfig") or {}).get("caBundle")
    at = base64_error_offset(bundle) if isinstance(bundle, str) else None
    if at is not None:
        raise BadRequest(
            'CustomResourceDefinition in version "v1" cannot be handled as a '
            f"CustomResourceDefinition: illegal base64 data at input byte {at}"
        )


def _stored_versions(obj: dict[str, Any], stored: list[str]) -> list[str]:
    out = list(stored)
    for v in (obj.get("spec") or {}).get("versions") or []:
        if v.get("storage") and v.get("name") not in out:
            out.append(v.get("name"))
    return out


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "lastTransitionTime": _now(),
        "reason": reason,
        "message": message,
    }


def accepted_status(crd: dict[str, Any]) -> dict[str, Any] | None:
    """The status that accepts a CRD's names and establishes it, or None when it has it.

    Names are always accepted here (the registry refuses conflicting CRDs when they are
    created); ``Established`` stays true once set, as in kube-apiserver.
    """
    status = crd.get("status") or {}
    names = dict((crd.get("spec") or {}).get("names") or {})
    if "kind" in names:
        names.setdefault("listKind", f"{names['kind']}List")
    if "plural" in names:
        names.setdefault("singular", str(names.get("kind", "")).lower())
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    wanted = {
        "NamesAccepted": ("True", "NoConflicts", "no conflicts found"),
        "Established": ("True", "InitialNamesAccepted", "the initial names have been accepted"),
    }
    current = all((conditions.get(k) or {}).get("status") == v[0] for k, v in wanted.items())
    if status.get("acceptedNames") == names and current:
        return None
    for kind, (value, reason, message) in wanted.items():
        if (conditions.get(kind) or {}).get("status") != value:
            conditions[kind] = _condition(kind, value, reason, message)
    return {**status, "acceptedNames": names, "conditions": list(conditions.values())}


def validate_crd(obj: dict[str, Any], builtin: frozenset[tuple[str, str]]) -> list[Cause]:
    """Everything that makes ``obj`` a CRD this server cannot serve faithfully."""
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    plural = names.get("plural") or ""
    name = obj["metadata"].get("name", "")
    if not group:
        causes.append(required("spec.group"))
    elif "." not in group:
        causes.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    else:
        causes += [invalid("spec.group", group, e) for e in dns1123_subdomain_errors(group)]
        if group.endswith(RESERVED_GROUP_SUFFIXES):
            causes.append(
                invalid("spec.group", group, "groups under k8s.io and kubernetes.io are reserved")
            )
    if plural and group and name != f"{plural}.{group}":
        causes.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    for field in ("plural", "singular"):
        value = names.get(field)
        if value:
            causes += [
                invalid(f"spec.names.{field}", value, e) for e in dns1123_label_errors(value)
            ]
    for field in ("kind", "listKind"):
        value = names.get(field)
        if value and not (value[0].isalpha() and value.replace("-", "").isalnum()):
            causes.append(
                invalid(
                    f"spec.names.{field}",
                    value,
                    "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
                )
            )
    for i, short in enumerate(names.get("shortNames") or []):
        causes += [
            invalid(f"spec.names.shortNames[{i}]", short, e) for e in dns1123_label_errors(short)
        ]
    if (group, plural) in builtin:
        causes.append(invalid("spec.names.plural", plural, "is a built-in resource"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            Cause(
                "spec.scope",
                f'Unsupported value: "{spec.get("scope", "")}": supported values: '
                '"Cluster", "Namespaced"',
                "FieldValueNotSupported",
            )
        )
    if spec.get("preserveUnknownFields"):
        causes.append(invalid("spec.preserveUnknownFields", True, "must be false in v1"))
    causes += _versions_causes(spec.get("versions") or [])
    causes += conversion_causes(spec.get("conversion") or {})
    return causes


def conversion_causes(conversion: dict[str, Any]) -> list[Cause]:
    """``validateCustomResourceConversion``, its paths those of the internal form
    (``spec.conversion.webhookClientConfig``), as kube-apiserver reports them."""
    field = "spec.conversion"
    strategy = conversion.get("strategy", "None")
    webhook = conversion.get("webhook")
    client = webhook.get("clientConfig") if isinstance(webhook, dict) else None
    versions = webhook.get("conversionReviewVersions") if isinstance(webhook, dict) else None
    if strategy != "Webhook":
        causes = []
        if strategy != "None":
            causes.append(
                Cause(
                    f"{field}.strategy",
                    f'Unsupported value: "{strategy}": supported values: "None", "Webhook"',
                    "FieldValueNotSupported",
                )
            )
        reason = "should not be set when strategy is not set to Webhook"
        if client is not None:
            causes.append(forbidden(f"{field}.webhookClientConfig", reason))
        if versions:
            causes.append(forbidden(f"{field}.conversionReviewVersions", reason))
        return causes
    if client is None:
        causes = [
            required(
                f"{field}.webhookClientConfig",
                "Required value: required when strategy is set to Webhook",
            )
        ]
    else:
        causes = client_config_causes(client, f"{field}.webhookClientConfig")
        bundle = client.get("caBundle") if isinstance(client, dict) else None
        data = base64.b64decode(bundle) if isinstance(bundle, str) else b""
        why = ca_bundle_error(data)
        if why is not None:
            # The value is a Go []byte, which field errors print with %#v.
            shown = "[]byte{" + ", ".join(f"0x{b:x}" for b in data) + "}"
            causes.append(
                Cause(f"{field}.webhookClientConfig.caBundle", f"Invalid value: {shown}: {why}")
            )
    return causes + review_versions_causes(versions, f"{field}.conversionReviewVersions", "")


def _versions_causes(versions: list[dict[str, Any]]) -> list[Cause]:
    causes: list[Cause] = []
    if not versions:
        return [required("spec.versions", "must have exactly one version marked as storage")]
    seen: set[str] = set()
    schemas = [(v.get("schema") or {}).get("openAPIV3Schema") for v in versions]
    # kube-apiserver validates the internal form of a CRD, where a schema shared by every
    # version is held once as spec.validation: its messages name that path.
    shared = len(versions) > 1 and all(s == schemas[0] for s in schemas)
    shared = shared or len(versions) == 1
    for i, v in enumerate(versions):
        field = f"spec.versions[{i}]"
        vname = v.get("name") or ""
        if vname in seen:
            causes.append(
                Cause(f"{field}.name", f'Duplicate value: "{vname}"', "FieldValueDuplicate")
            )
        seen.add(vname)
        causes += [invalid(f"{field}.name", vname, e) for e in dns1123_label_errors(vname)]
        raw = schemas[i]
        where = "spec.validation.openAPIV3Schema" if shared else f"{field}.schema.openAPIV3Schema"
        if not isinstance(raw, dict):
            causes.append(required(f"{field}.schema.openAPIV3Schema", "schemas are required"))
        elif not shared or i == 0:
            schema_causes = _schema_causes(raw, where, root=True)
            schema_causes += list_type_causes(raw, where)
            try:
                Schema.compile(raw)
            except jsonschema.SchemaError as exc:
                schema_causes.append(invalid(where, "", str(exc.message)))
            if not schema_causes:
                schema_causes = compile_rules(raw, where)[1]
            causes += schema_causes
        for j, col in enumerate(v.get("additionalPrinterColumns") or []):
            cfield = f"{field}.additionalPrinterColumns[{j}]"
            if col.get("type") not in COLUMN_TYPES:
                causes.append(
                    Cause(
                        f"{cfield}.type",
                        f'Unsupported value: "{col.get("type")}": supported values: '
                        + ", ".join(f'"{t}"' for t in COLUMN_TYPES),
                        "FieldValueNotSupported",
                    )
                )
            try:
                compile_path(str(col.get("jsonPath", "")))
            except JSONPathError as exc:
                causes.append(invalid(f"{cfield}.jsonPath", col.get("jsonPath"), str(exc)))
        for j, sel in enumerate(v.get("selectableFields") or []):
            path = str(sel.get("jsonPath", ""))
            if not path.startswith(".") or any(c in path for c in "[]*?@"):
                causes.append(
                    invalid(
                        f"{field}.selectableFields[{j}].jsonPath",
                        path,
                        "must be a simple path to a field (e.g. .spec.color)",
                    )
                )
    storage = [v for v in versions if v.get("storage")]
    if len(storage) != 1:
        causes.append(
            invalid(
                "spec.versions", len(storage), "must have exactly one version marked as storage"
            )
        )
    if not any(v.get("served") for v in versions):
        causes.append(invalid("spec.versions", "", "must have at least one version served"))
    return causes


def _schema_causes(schema: Any, field: str, *, root: bool = False) -> list[Cause]:
    if not isinstance(schema, dict):
        return [invalid(field, schema, "must be an object")]
    causes: list[Cause] = []
    if root and schema.get("type") != "object":
        causes.append(
            invalid(f"{field}.type", schema.get("type", ""), "must be object at the root")
        )
    typed = (
        "type" in schema
        or schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    )
    if not typed and not root:
        causes.append(required(f"{field}.type", "must not be empty for specified fields"))
    for key, sub in (schema.get("properties") or {}).items():
        causes += _schema_causes(sub, f"{field}.properties[{key}]")
    if isinstance(schema.get("items"), dict):
        causes += _schema_causes(schema["items"], f"{field}.items")
    if isinstance(schema.get("additionalProperties"), dict):
        causes += _schema_causes(schema["additionalProperties"], f"{field}.additionalProperties")
    return causes


def resource_type(crd: dict[str, Any]) -> ResourceType:
    """The resource a valid CRD defines (call :func:`validate_crd` first)."""
    spec = crd["spec"]
    names = spec["names"]
    versions = []
    for v in sorted(spec["versions"], key=lambda v: version_priority(v["name"])):
        raw = v["schema"]["openAPIV3Schema"]
        rules, _ = compile_rules(raw, "")
        columns = [
            PrinterColumn(
                name=c["name"],
                type=c["type"],
                json_path=c["jsonPath"],
                description=c.get("description", ""),
                format=c.get("format", ""),
                priority=int(c.get("priority", 0)),
            )
            for c in v.get("additionalPrinterColumns") or []
        ]
        versions.append(
            Version(
                name=v["name"],
                schema=Schema.compile(raw),
                served=bool(v.get("served")),
                storage=bool(v.get("storage")),
                status="status" in (v.get("subresources") or {}),
                columns=(name_column(), *columns) if columns else (name_column(), age_column()),
                selectable_fields=tuple(s["jsonPath"] for s in v.get("selectableFields") or []),
                deprecated=bool(v.get("deprecated")),
                deprecation_warning=v.get("deprecationWarning"),
                rules=Validator(rules) if rules is not None else None,
            )
        )
    conversion = spec.get("conversion") or {}
    webhook = None
    if conversion.get("strategy") == "Webhook":
        review = conversion["webhook"]["conversionReviewVersions"]
        webhook = ConversionWebhook(
            client=ClientConfig.parse(conversion["webhook"]["clientConfig"]),
            review_version=next(v for v in review if v in REVIEW_VERSIONS),
        )
    return ResourceType(
        group=spec["group"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        kind=names["kind"],
        list_kind=names.get("listKind") or f"{names['kind']}List",
        namespaced=spec["scope"] == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        versions=tuple(versions),
        strategy=Strategy(),
        crd=crd["metadata"]["name"],
        terminating=bool(crd["metadata"].get("deletionTimestamp")),
        conversion=webhook,
    )


def crd_type(builtin: frozenset[tuple[str, str]]) -> ResourceType:
    """The ResourceType of CustomResourceDefinition itself."""
    return ResourceType(
        group=GROUP,
        plural="customresourcedefinitions",
        singular="customresourcedefinition",
        kind="CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        strategy=CRDStrategy(builtin),
        versions=(
            Version(
                "v1",
                Schema.compile(CRD_SCHEMA),
                storage=True,
                status=True,
                columns=(
                    name_column(),
                    PrinterColumn(
                        "Created At",
                        "string",
                        json_path=".metadata.creationTimestamp",
                        format="date-time",
                        description="CreationTimestamp is the server time when this object was "
                        "created, in RFC3339 form and in UTC.",
                    ),
                ),
            ),
        ),
    )
