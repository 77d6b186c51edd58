"""OpenAPI v3 documents, built from the registry's schemas, as kube-apiserver serves them.

``/openapi/v3`` lists one document per group-version with a content hash in its URL;
``/openapi/v3/api/v1`` and ``/openapi/v3/apis/<group>/<version>`` hold the paths and schemas.
kubectl reads them for ``explain`` (schemas found by ``x-kubernetes-group-version-kind``), for
client-side apply, and to learn that the server validates fields itself (the
``fieldValidation`` parameter on PATCH operations), so it sends ``fieldValidation=Strict``
instead of validating on the client.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from arges.apiserver import codec, gnostic
from arges.apiserver.metaschema import OBJECT_META, OWNER_REFERENCE
from arges.apiserver.resources import Registry, ResourceType, Version

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
OBJECT_META_REF = f"#/components/schemas/{META}.ObjectMeta"
LIST_META_REF = f"#/components/schemas/{META}.ListMeta"
STATUS_REF = f"#/components/schemas/{META}.Status"
DELETE_OPTIONS_REF = f"#/components/schemas/{META}.DeleteOptions"
WATCH_EVENT_REF = f"#/components/schemas/{META}.WatchEvent"

_DEFINITION_PREFIX = {
    "": "io.k8s.api.core",
    "coordination.k8s.io": "io.k8s.api.coordination",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "admissionregistration.k8s.io": "io.k8s.api.admissionregistration",
}


def definition_name(rt: ResourceType, version: str, kind: str | None = None) -> str:
    """The schema name kube-apiserver uses: ``io.k8s.api.core.v1.Secret`` for built-in kinds,
    the reversed group for custom ones (``dev.arges.metal.v1alpha1.Server``)."""
    prefix = _DEFINITION_PREFIX.get(rt.group) or ".".join(reversed(rt.group.split(".")))
    return f"{prefix}.{version}.{kind or rt.kind}"


def _query(name: str, description: str, typ: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": typ, "uniqueItems": True},
    }


DRY_RUN = _query(
    "dryRun",
    "When present, indicates that modifications should not be persisted. Valid values: All.",
)
FIELD_MANAGER = _query("fieldManager", "A name associated with the actor making these changes.")
FIELD_VALIDATION = _query(
    "fieldValidation",
    "How the server handles unknown fields in the request: Ignore, Warn (default) or Strict.",
)
PRETTY = _query("pretty", "If 'true', the output is pretty printed.")
LIST_PARAMS = [
    _query("allowWatchBookmarks", "Requests watch events with type BOOKMARK.", "boolean"),
    _query("continue", "The continue token of the previous page."),
    _query("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
    _query("labelSelector", "A selector to restrict the list of returned objects by their labels."),
    _query("limit", "Maximum number of responses to return for a list call.", "integer"),
    _query("resourceVersion", "Constrains which resource versions the request may be served from."),
    _query("resourceVersionMatch", "How resourceVersion is applied: Exact or NotOlderThan."),
    _query("sendInitialEvents", "Send synthetic events for the current state first.", "boolean"),
    _query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    _query("watch", "Watch for changes instead of listing.", "boolean"),
]


def _response(ref: str, description: str = "OK") -> dict[str, Any]:
    content = {"schema": {"$ref": ref}}
    return {
        "description": description,
        "content": {"application/json": content, "application/yaml": content},
    }


def _op(
    rt: ResourceType,
    version: Version,
    action: str,
    op_id: str,
    ref: str,
    params: list[dict[str, Any]],
    body: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "tags": [rt.group or "core"],
        "description": f"{action} {rt.kind}",
        "operationId": op_id,
        "parameters": params,
        "responses": {"200": _response(ref), **(extra or {})},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rt.group,
            "version": version.name,
            "kind": rt.kind,
        },
    }
    if body is not None:
        op["requestBody"] = body
    return op


def _paths(rt: ResourceType, version: Version) -> dict[str, Any]:
    base = f"/api/{version.name}" if not rt.group else f"/apis/{rt.group}/{version.name}"
    kind_ref = f"#/components/schemas/{definition_name(rt, version.name)}"
    list_ref = f"#/components/schemas/{definition_name(rt, version.name, rt.list_kind_name)}"
    object_body = {"content": {"*/*": {"schema": {"$ref": kind_ref}}}, "required": True}
    patch_types = ["application/json-patch+json", "application/merge-patch+json"]
    if rt.strategy.strategic is not None:
        patch_types.append("application/strategic-merge-patch+json")
    patch_body = {
        "content": {t: {"schema": {"type": "object"}} for t in patch_types},
        "required": True,
    }
    write_params = [DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, PRETTY]
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": f"name of the {rt.kind}",
        "schema": {"type": "string", "uniqueItems": True},
    }
    ns_param = {
        "name": "namespace",
        "in": "path",
        "required": True,
        "description": "object name and auth scope, such as for teams and projects",
        "schema": {"type": "string", "uniqueItems": True},
    }
    scope = [ns_param] if rt.namespaced else []
    prefix = (
        f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    )
    op = f"{rt.kind}{version.name}"
    paths: dict[str, Any] = {
        prefix: {
            "get": _op(rt, version, "list", f"list{op}", list_ref, LIST_PARAMS),
            "post": _op(
                rt,
                version,
                "post",
                f"create{op}",
                kind_ref,
                write_params,
                object_body,
                {"201": _response(kind_ref, "Created")},
            ),
            "delete": _op(
                rt,
                version,
                "deletecollection",
                f"deletecollection{op}",
                STATUS_REF,
                [*LIST_PARAMS, DRY_RUN],
            ),
            "parameters": [*scope, PRETTY],
        },
        f"{prefix}/{{name}}": {
            "get": _op(rt, version, "get", f"read{op}", kind_ref, []),
            "put": _op(rt, version, "put", f"replace{op}", kind_ref, write_params, object_body),
            "patch": _op(rt, version, "patch", f"patch{op}", kind_ref, write_params, patch_body),
            "delete": _op(
                rt,
                version,
                "delete",
                f"delete{op}",
                STATUS_REF,
                [DRY_RUN],
                {"content": {"*/*": {"schema": {"$ref": DELETE_OPTIONS_REF}}}},
            ),
            "parameters": [name_param, *scope, PRETTY],
        },
    }
    if version.status:
        paths[f"{prefix}/{{name}}/status"] = {
            "get": _op(rt, version, "get", f"read{op}Status", kind_ref, []),
            "put": _op(
                rt, version, "put", f"replace{op}Status", kind_ref, write_params, object_body
            ),
            "patch": _op(
                rt, version, "patch", f"patch{op}Status", kind_ref, write_params, patch_body
            ),
            "parameters": [name_param, *scope, PRETTY],
        }
    if rt.namespaced:
        paths[f"{base}/{rt.plural}"] = {
            "get": _op(rt, version, "list", f"list{op}ForAllNamespaces", list_ref, LIST_PARAMS),
            "parameters": [PRETTY],
        }
    return paths


def _with_meta_ref(schema: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    props = out.setdefault("properties", {})
    props["metadata"] = {
        "description": "Standard object's metadata.",
        "allOf": [{"$ref": OBJECT_META_REF}],
    }
    props.setdefault(
        "apiVersion",
        {
            "type": "string",
            "description": "APIVersion defines the "
            "versioned schema of this representation of an object.",
        },
    )
    props.setdefault(
        "kind",
        {
            "type": "string",
            "description": "Kind is a string value "
            "representing the REST resource this object represents.",
        },
    )
    return out


def _schemas(rt: ResourceType, version: Version) -> dict[str, Any]:
    gvk = [{"group": rt.group, "version": version.name, "kind": rt.kind}]
    kind_schema = _with_meta_ref(version.schema.raw if version.schema else {"type": "object"})
    kind_schema["x-kubernetes-group-version-kind"] = gvk
    list_schema = {
        "type": "object",
        "description": f"{rt.list_kind_name} is a list of {rt.kind}",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {
                "type": "array",
                "description": f"List of {rt.plural}.",
                "items": {"$ref": f"#/components/schemas/{definition_name(rt, version.name)}"},
            },
            "metadata": {"allOf": [{"$ref": LIST_META_REF}]},
        },
        "x-kubernetes-group-version-kind": [
            {"group": rt.group, "version": version.name, "kind": rt.list_kind_name}
        ],
    }
    return {
        definition_name(rt, version.name): kind_schema,
        definition_name(rt, version.name, rt.list_kind_name): list_schema,
    }


def _meta_schemas() -> dict[str, Any]:
    obj_meta = copy.deepcopy(OBJECT_META)
    obj_meta["properties"]["ownerReferences"]["items"] = {
        "$ref": f"#/components/schemas/{META}.OwnerReference"
    }
    return {
        f"{META}.ObjectMeta": obj_meta,
        f"{META}.OwnerReference": OWNER_REFERENCE,
        f"{META}.ListMeta": {
            "type": "object",
            "properties": {
                "continue": {"type": "string"},
                "remainingItemCount": {"type": "integer", "format": "int64"},
                "resourceVersion": {"type": "string"},
            },
        },
        f"{META}.Status": {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "code": {"type": "integer", "format": "int32"},
                "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "message": {"type": "string"},
                "metadata": {"allOf": [{"$ref": LIST_META_REF}]},
                "reason": {"type": "string"},
                "status": {"type": "string"},
            },
        },
        f"{META}.DeleteOptions": {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "dryRun": {"type": "array", "items": {"type": "string"}},
                "gracePeriodSeconds": {"type": "integer", "format": "int64"},
                "orphanDependents": {"type": "boolean"},
                "preconditions": {
                    "type": "object",
                    "properties": {
                        "resourceVersion": {"type": "string"},
                        "uid": {"type": "string"},
                    },
                },
                "propagationPolicy": {"type": "string"},
            },
        },
        f"{META}.WatchEvent": {
            "type": "object",
            "required": ["type", "object"],
            "properties": {
                "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "type": {"type": "string"},
            },
        },
    }


_V2_DROPPED = frozenset({"nullable", "anyOf", "oneOf", "not", "x-kubernetes-validations"})


def _v2_schema(value: Any) -> Any:
    """An OpenAPI v3 schema as Swagger 2.0 accepts it: v2 references, no v3-only keywords."""
    if isinstance(value, list):
        return [_v2_schema(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in value.items():
        if key in _V2_DROPPED:
            continue
        if key == "$ref" and isinstance(sub, str):
            out[key] = sub.replace("#/components/schemas/", "#/definitions/")
        elif key in ("properties", "definitions"):
            out[key] = {k: _v2_schema(v) for k, v in sub.items()}
        elif key in ("items", "additionalProperties", "allOf"):
            out[key] = _v2_schema(sub)
        else:
            out[key] = sub
    return out


def _v2_parameter(param: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in param.items() if k != "schema"}
    out.update(param.get("schema") or {})
    return out


def _v2_operation(op: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in op.items() if k not in ("requestBody", "responses", "parameters")}
    out["parameters"] = [_v2_parameter(p) for p in op.get("parameters") or []]
    body = op.get("requestBody")
    if body:
        content = body.get("content") or {}
        out["consumes"] = list(content)
        first: dict[str, Any] = next(iter(content.values()), {})
        out["parameters"].append(
            {
                "name": "body",
                "in": "body",
                "required": True,
                "schema": _v2_schema(first.get("schema") or {"type": "object"}),
            }
        )
    out["produces"] = ["application/json", "application/yaml"]
    out["schemes"] = ["https"]
    out["responses"] = {}
    for code, resp in (op.get("responses") or {}).items():
        schema = ((resp.get("content") or {}).get("application/json") or {}).get("schema")
        entry: dict[str, Any] = {"description": resp.get("description", "")}
        if schema:
            entry["schema"] = _v2_schema(schema)
        out["responses"][code] = entry
    return out


class OpenAPI:
    """Cached OpenAPI v3 documents (and the v2 merge of them); rebuilt when the registry
    changes."""

    def __init__(self, registry: Registry, server_version: str) -> None:
        self.registry = registry
        self.server_version = server_version
        self._generation = -1
        self._docs: dict[str, bytes] = {}
        self._hashes: dict[str, str] = {}
        self._v2: tuple[bytes, bytes] | None = None

    def _refresh(self) -> None:
        if self._generation == self.registry.generation:
            return
        grouped: dict[str, list[tuple[ResourceType, Version]]] = {}
        for rt in self.registry.all():
            for v in rt.served():
                key = f"api/{v.name}" if not rt.group else f"apis/{rt.group}/{v.name}"
                grouped.setdefault(key, []).append((rt, v))
        docs: dict[str, bytes] = {}
        for key, types in sorted(grouped.items()):
            paths: dict[str, Any] = {}
            schemas = _meta_schemas()
            for rt, v in sorted(types, key=lambda t: t[0].plural):
                paths.update(_paths(rt, v))
                schemas.update(_schemas(rt, v))
            docs[key] = codec.dumps(
                {
                    "openapi": "3.0.0",
                    "info": {"title": "Kubernetes", "version": self.server_version},
                    "paths": paths,
                    "components": {"schemas": schemas},
                }
            )
        self._docs = docs
        self._hashes = {k: hashlib.sha512(d).hexdigest().upper() for k, d in docs.items()}
        self._v2 = None
        self._generation = self.registry.generation

    def root(self) -> dict[str, Any]:
        """``/openapi/v3``: each group-version's document URL, with its content hash."""
        self._refresh()
        return {
            "paths": {
                key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={self._hashes[key]}"}
                for key in self._docs
            }
        }

    def document(self, key: str) -> tuple[bytes, str] | None:
        """The document for ``api/v1`` or ``apis/<group>/<version>`` and its hash."""
        self._refresh()
        doc = self._docs.get(key)
        return (doc, self._hashes[key]) if doc is not None else None

    def v2(self) -> tuple[bytes, bytes]:
        """``/openapi/v2`` as (JSON, gnostic protobuf): every group-version in one document."""
        self._refresh()
        if self._v2 is None:
            paths: dict[str, Any] = {}
            definitions: dict[str, Any] = {}
            for doc in self._docs.values():
                parsed = codec.loads(doc)
                for name, item in parsed["paths"].items():
                    paths[name] = {
                        k: (
                            _v2_operation(v) if k != "parameters" else [_v2_parameter(p) for p in v]
                        )
                        for k, v in item.items()
                    }
                for name, schema in parsed["components"]["schemas"].items():
                    definitions[name] = _v2_schema(schema)
            swagger = {
                "swagger": "2.0",
                "info": {"title": "Kubernetes", "version": self.server_version},
                "paths": dict(sorted(paths.items())),
                "definitions": dict(sorted(definitions.items())),
            }
            self._v2 = (codec.dumps(swagger), gnostic.document(swagger))
        return self._v2
