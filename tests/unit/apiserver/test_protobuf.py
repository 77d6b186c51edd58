import base64

import pytest

from arges.apiserver import gnostic, kubeproto
from arges.apiserver.errors import BadRequest, UnsupportedMediaType
from arges.apiserver.kubeproto import _MESSAGES


def envelope(kind: str, message: object) -> bytes:
    unknown = _MESSAGES["Unknown"]()
    unknown.typeMeta.apiVersion = "v1"
    unknown.typeMeta.kind = kind
    unknown.raw = message.SerializeToString()
    return kubeproto.MAGIC + unknown.SerializeToString()


def test_secret_decodes_to_its_json_form() -> None:
    secret = _MESSAGES["Secret"]()
    secret.metadata.name = "bmc"
    secret.metadata.namespace = "default"
    secret.metadata.labels["role"] = "bmc"
    secret.data["password"] = b"\x00hunter2"
    secret.type = "Opaque"
    obj = kubeproto.decode(envelope("Secret", secret))
    assert obj == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bmc", "namespace": "default", "labels": {"role": "bmc"}},
        "data": {"password": base64.b64encode(b"\x00hunter2").decode()},
        "type": "Opaque",
    }


def test_unknown_kinds_and_garbage_are_refused() -> None:
    with pytest.raises(UnsupportedMediaType):
        kubeproto.decode(envelope("Pod", _MESSAGES["ConfigMap"]()))
    with pytest.raises(BadRequest):
        kubeproto.decode(b"not protobuf")
    with pytest.raises(BadRequest):
        kubeproto.decode(kubeproto.MAGIC + b"\xff\xff\xff")


def test_gnostic_document_carries_operations_parameters_and_extensions() -> None:
    swagger = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0"},
        "paths": {
            "/api/v1/namespaces/{namespace}/secrets/{name}": {
                "patch": {
                    "operationId": "patchSecret",
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "type": "string"},
                        {"name": "body", "in": "body", "schema": {"type": "object"}},
                    ],
                    "responses": {
                        "200": {"description": "OK", "schema": {"$ref": "#/definitions/S"}}
                    },
                    "x-kubernetes-group-version-kind": {
                        "group": "",
                        "version": "v1",
                        "kind": "Secret",
                    },
                },
                "parameters": [{"name": "name", "in": "path", "required": True, "type": "string"}],
            }
        },
        "definitions": {
            "S": {
                "type": "object",
                "properties": {"data": {"type": "object"}},
                "x-kubernetes-group-version-kind": [{"kind": "Secret"}],
            }
        },
    }
    doc = gnostic._M["Document"].FromString(gnostic.document(swagger))
    path = doc.paths.path[0]
    assert path.name == "/api/v1/namespaces/{namespace}/secrets/{name}"
    patch = path.value.patch
    query = patch.parameters[0].parameter.non_body_parameter.query_parameter_sub_schema
    assert query.name == "fieldValidation"
    assert patch.parameters[1].parameter.body_parameter.schema.type.value == ["object"]
    ext = patch.vendor_extension[0]
    assert ext.name == "x-kubernetes-group-version-kind" and "kind: Secret" in ext.value.yaml
    assert path.value.parameters[0].parameter.non_body_parameter.path_parameter_sub_schema.required
    assert (
        doc.definitions.additional_properties[0].value.properties.additional_properties[0].name
        == "data"
    )
