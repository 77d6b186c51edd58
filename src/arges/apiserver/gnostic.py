"""OpenAPI v2 (Swagger 2.0) documents in gnostic's protobuf encoding.

kubectl up to 1.28 fetches ``/openapi/v2`` only as
``application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and decodes it into gnostic's
``openapi.v2.Document`` (github.com/google/gnostic-models, ``openapiv2/OpenAPIv2.proto``).
This module declares the part of that schema kubectl reads (paths, operations, parameters,
responses, definitions, vendor extensions) and fills it from a Swagger document held as plain
dicts. gnostic keeps maps as ordered ``Named*`` lists and free-form values (defaults, enums,
``x-kubernetes-*`` extensions) as YAML text inside its ``Any``.
"""

from __future__ import annotations

from typing import Any

import yaml
from google.protobuf.message import Message

from arges.apiserver.protobufs import build

_NAMED_ANY = [("name", 1, "string"), ("value", 2, "Any")]

_M = build(
    "openapi.v2",
    {
        "Any": [("yaml", 2, "string")],
        "NamedAny": _NAMED_ANY,
        "Info": [("title", 1, "string"), ("version", 2, "string")],
        "JsonReference": [("_ref", 1, "string"), ("description", 2, "string")],
        "TypeItem": [("value", 1, "repeated string")],
        "ItemsItem": [("schema", 1, "repeated Schema")],
        "NamedSchema": [("name", 1, "string"), ("value", 2, "Schema")],
        "Properties": [("additional_properties", 1, "repeated NamedSchema")],
        "AdditionalPropertiesItem": [("schema", 1, "Schema"), ("boolean", 2, "bool")],
        "Schema": [
            ("_ref", 1, "string"),
            ("format", 2, "string"),
            ("title", 3, "string"),
            ("description", 4, "string"),
            ("default", 5, "Any"),
            ("multiple_of", 6, "double"),
            ("maximum", 7, "double"),
            ("exclusive_maximum", 8, "bool"),
            ("minimum", 9, "double"),
            ("exclusive_minimum", 10, "bool"),
            ("max_length", 11, "int64"),
            ("min_length", 12, "int64"),
            ("pattern", 13, "string"),
            ("max_items", 14, "int64"),
            ("min_items", 15, "int64"),
            ("unique_items", 16, "bool"),
            ("max_properties", 17, "int64"),
            ("min_properties", 18, "int64"),
            ("required", 19, "repeated string"),
            ("enum", 20, "repeated Any"),
            ("additional_properties", 21, "AdditionalPropertiesItem"),
            ("type", 22, "TypeItem"),
            ("items", 23, "ItemsItem"),
            ("all_of", 24, "repeated Schema"),
            ("properties", 25, "Properties"),
            ("vendor_extension", 31, "repeated NamedAny"),
        ],
        "Definitions": [("additional_properties", 1, "repeated NamedSchema")],
        "BodyParameter": [
            ("description", 1, "string"),
            ("name", 2, "string"),
            ("in", 3, "string"),
            ("required", 4, "bool"),
            ("schema", 5, "Schema"),
        ],
        "QueryParameterSubSchema": [
            ("required", 1, "bool"),
            ("in", 2, "string"),
            ("description", 3, "string"),
            ("name", 4, "string"),
            ("type", 6, "string"),
            ("unique_items", 20, "bool"),
        ],
        "PathParameterSubSchema": [
            ("required", 1, "bool"),
            ("in", 2, "string"),
            ("description", 3, "string"),
            ("name", 4, "string"),
            ("type", 5, "string"),
            ("unique_items", 19, "bool"),
        ],
        "NonBodyParameter": [
            ("query_parameter_sub_schema", 3, "QueryParameterSubSchema"),
            ("path_parameter_sub_schema", 4, "PathParameterSubSchema"),
        ],
        "Parameter": [
            ("body_parameter", 1, "BodyParameter"),
            ("non_body_parameter", 2, "NonBodyParameter"),
        ],
        "ParametersItem": [("parameter", 1, "Parameter"), ("json_reference", 2, "JsonReference")],
        "SchemaItem": [("schema", 1, "Schema")],
        "Response": [("description", 1, "string"), ("schema", 2, "SchemaItem")],
        "ResponseValue": [("response", 1, "Response")],
        "NamedResponseValue": [("name", 1, "string"), ("value", 2, "ResponseValue")],
        "Responses": [("response_code", 1, "repeated NamedResponseValue")],
        "Operation": [
            ("tags", 1, "repeated string"),
            ("description", 3, "string"),
            ("operation_id", 5, "string"),
            ("produces", 6, "repeated string"),
            ("consumes", 7, "repeated string"),
            ("parameters", 8, "repeated ParametersItem"),
            ("responses", 9, "Responses"),
            ("schemes", 10, "repeated string"),
            ("vendor_extension", 13, "repeated NamedAny"),
        ],
        "PathItem": [
            ("get", 2, "Operation"),
            ("put", 3, "Operation"),
            ("post", 4, "Operation"),
            ("delete", 5, "Operation"),
            ("options", 6, "Operation"),
            ("head", 7, "Operation"),
            ("patch", 8, "Operation"),
            ("parameters", 9, "repeated ParametersItem"),
            ("vendor_extension", 10, "repeated NamedAny"),
        ],
        "NamedPathItem": [("name", 1, "string"), ("value", 2, "PathItem")],
        "Paths": [("path", 2, "repeated NamedPathItem")],
        "Document": [
            ("swagger", 1, "string"),
            ("info", 2, "Info"),
            ("paths", 8, "Paths"),
            ("definitions", 9, "Definitions"),
        ],
    },
    syntax="proto3",
)

# Swagger keyword -> (Schema field, kind); kinds other than plain copies are handled below.
_SCHEMA_SCALARS = {
    "$ref": "_ref",
    "format": "format",
    "title": "title",
    "description": "description",
    "multipleOf": "multiple_of",
    "maximum": "maximum",
    "exclusiveMaximum": "exclusive_maximum",
    "minimum": "minimum",
    "exclusiveMinimum": "exclusive_minimum",
    "maxLength": "max_length",
    "minLength": "min_length",
    "pattern": "pattern",
    "maxItems": "max_items",
    "minItems": "min_items",
    "uniqueItems": "unique_items",
    "maxProperties": "max_properties",
    "minProperties": "min_properties",
}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


def _fill_any(msg: Any, value: Any) -> None:
    msg.yaml = yaml.safe_dump(value, default_flow_style=False).rstrip("\n")


def _extensions(repeated: Any, obj: dict[str, Any]) -> None:
    for key, value in obj.items():
        if key.startswith("x-"):
            named = repeated.add(name=key)
            _fill_any(named.value, value)


def _fill_schema(msg: Any, obj: dict[str, Any]) -> None:
    for key, field in _SCHEMA_SCALARS.items():
        if obj.get(key) is not None:
            setattr(msg, field, obj[key])
    if "default" in obj:
        _fill_any(msg.default, obj["default"])
    msg.required.extend(obj.get("required") or [])
    for value in obj.get("enum") or []:
        _fill_any(msg.enum.add(), value)
    additional = obj.get("additionalProperties")
    if isinstance(additional, dict):
        _fill_schema(msg.additional_properties.schema, additional)
    elif additional is True:
        msg.additional_properties.boolean = True
    typ = obj.get("type")
    if typ:
        msg.type.value.extend(typ if isinstance(typ, list) else [typ])
    if isinstance(obj.get("items"), dict):
        _fill_schema(msg.items.schema.add(), obj["items"])
    for sub in obj.get("allOf") or []:
        _fill_schema(msg.all_of.add(), sub)
    for name, sub in (obj.get("properties") or {}).items():
        _fill_schema(msg.properties.additional_properties.add(name=name).value, sub)
    _extensions(msg.vendor_extension, obj)


def _fill_parameter(msg: Any, param: dict[str, Any]) -> None:
    if "$ref" in param:
        msg.json_reference._ref = param["$ref"]
        return
    where = param.get("in")
    if where == "body":
        body = msg.parameter.body_parameter
        body.name = param.get("name", "body")
        body.description = param.get("description", "")
        setattr(body, "in", "body")
        body.required = bool(param.get("required"))
        _fill_schema(body.schema, param.get("schema") or {})
        return
    non_body = msg.parameter.non_body_parameter
    sub = (
        non_body.path_parameter_sub_schema
        if where == "path"
        else non_body.query_parameter_sub_schema
    )
    sub.required = bool(param.get("required"))
    setattr(sub, "in", where or "query")
    sub.description = param.get("description", "")
    sub.name = param.get("name", "")
    sub.type = param.get("type", "")
    sub.unique_items = bool(param.get("uniqueItems"))


def _fill_operation(msg: Any, op: dict[str, Any]) -> None:
    msg.tags.extend(op.get("tags") or [])
    msg.description = op.get("description", "")
    msg.operation_id = op.get("operationId", "")
    msg.produces.extend(op.get("produces") or [])
    msg.consumes.extend(op.get("consumes") or [])
    for param in op.get("parameters") or []:
        _fill_parameter(msg.parameters.add(), param)
    for code, resp in (op.get("responses") or {}).items():
        response = msg.responses.response_code.add(name=code).value.response
        response.description = resp.get("description", "")
        if resp.get("schema"):
            _fill_schema(response.schema.schema, resp["schema"])
    msg.schemes.extend(op.get("schemes") or [])
    _extensions(msg.vendor_extension, op)


def document(doc: dict[str, Any]) -> bytes:
    """Encode a Swagger 2.0 document (plain dicts) as a serialized ``openapi.v2.Document``."""
    msg: Message = _M["Document"]()
    out: Any = msg
    out.swagger = doc.get("swagger", "2.0")
    out.info.title = (doc.get("info") or {}).get("title", "")
    out.info.version = (doc.get("info") or {}).get("version", "")
    for name, item in (doc.get("paths") or {}).items():
        path = out.paths.path.add(name=name).value
        for method in _METHODS:
            if method in item:
                _fill_operation(getattr(path, method), item[method])
        for param in item.get("parameters") or []:
            _fill_parameter(path.parameters.add(), param)
        _extensions(path.vendor_extension, item)
    for name, schema in (doc.get("definitions") or {}).items():
        _fill_schema(out.definitions.additional_properties.add(name=name).value, schema)
    return msg.SerializeToString()
