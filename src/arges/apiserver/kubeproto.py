"""Kubernetes' protobuf encoding of built-in kinds, decoded into their JSON form.

Since 1.33, ``kubectl create secret|configmap|namespace`` sends its object as
``application/vnd.kubernetes.protobuf`` and does not fall back to JSON. The encoding
(``k8s.io/apimachinery/pkg/runtime/serializer/protobuf``) is the 4-byte magic ``k8s\\0``
followed by a ``runtime.Unknown`` whose ``raw`` holds the object's message, as declared in
``k8s.io/api/core/v1/generated.proto`` and ``k8s.io/apimachinery/pkg/apis/meta/v1/
generated.proto``. Only the kinds kubectl creates this way are declared; any other arrives
as a 415 with a clear message. Responses are always JSON, which those clients also accept.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from arges.apiserver.errors import BadRequest, UnsupportedMediaType
from arges.apiserver.protobufs import build

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_MESSAGES = build(
    "k8s.io.arges",
    {
        "TypeMeta": [("apiVersion", 1, "string"), ("kind", 2, "string")],
        "Unknown": [
            ("typeMeta", 1, "TypeMeta"),
            ("raw", 2, "bytes"),
            ("contentEncoding", 3, "string"),
            ("contentType", 4, "string"),
        ],
        "Time": [("seconds", 1, "int64"), ("nanos", 2, "int32")],
        "OwnerReference": [
            ("kind", 1, "string"),
            ("name", 3, "string"),
            ("uid", 4, "string"),
            ("apiVersion", 5, "string"),
            ("controller", 6, "bool"),
            ("blockOwnerDeletion", 7, "bool"),
        ],
        "ObjectMeta": [
            ("name", 1, "string"),
            ("generateName", 2, "string"),
            ("namespace", 3, "string"),
            ("selfLink", 4, "string"),
            ("uid", 5, "string"),
            ("resourceVersion", 6, "string"),
            ("generation", 7, "int64"),
            ("creationTimestamp", 8, "Time"),
            ("deletionTimestamp", 9, "Time"),
            ("deletionGracePeriodSeconds", 10, "int64"),
            ("labels", 11, "map<string,string>"),
            ("annotations", 12, "map<string,string>"),
            ("ownerReferences", 13, "repeated OwnerReference"),
            ("finalizers", 14, "repeated string"),
        ],
        "ConfigMap": [
            ("metadata", 1, "ObjectMeta"),
            ("data", 2, "map<string,string>"),
            ("binaryData", 3, "map<string,bytes>"),
            ("immutable", 4, "bool"),
        ],
        "Secret": [
            ("metadata", 1, "ObjectMeta"),
            ("data", 2, "map<string,bytes>"),
            ("type", 3, "string"),
            ("stringData", 4, "map<string,string>"),
            ("immutable", 5, "bool"),
        ],
        "NamespaceSpec": [("finalizers", 1, "repeated string")],
        "NamespaceCondition": [
            ("type", 1, "string"),
            ("status", 2, "string"),
            ("lastTransitionTime", 4, "Time"),
            ("reason", 5, "string"),
            ("message", 6, "string"),
        ],
        "NamespaceStatus": [
            ("phase", 1, "string"),
            ("conditions", 2, "repeated NamespaceCondition"),
        ],
        "Namespace": [
            ("metadata", 1, "ObjectMeta"),
            ("spec", 2, "NamespaceSpec"),
            ("status", 3, "NamespaceStatus"),
        ],
    },
)

KINDS = {("v1", kind): _MESSAGES[kind] for kind in ("ConfigMap", "Secret", "Namespace")}


def decode(body: bytes) -> dict[str, Any]:
    """A Kubernetes-protobuf request body as the JSON object it stands for.

    Raises:
        BadRequest: when the body is not a well-formed Kubernetes protobuf envelope.
        UnsupportedMediaType: when its kind has no protobuf decoding here.
    """
    if not body.startswith(MAGIC):
        raise BadRequest("protobuf body lacks the Kubernetes 'k8s\\x00' prefix")
    try:
        envelope: Any = _MESSAGES["Unknown"].FromString(body[len(MAGIC) :])
    except DecodeError as exc:
        raise BadRequest(f"malformed protobuf body: {exc}") from exc
    api_version = envelope.typeMeta.apiVersion
    kind = envelope.typeMeta.kind
    message = KINDS.get((api_version, kind))
    if message is None:
        raise UnsupportedMediaType(
            f"{api_version} {kind} cannot be sent as {MEDIA_TYPE} here; send application/json"
        )
    try:
        obj: Message = message.FromString(envelope.raw)
    except DecodeError as exc:
        raise BadRequest(f"malformed protobuf {kind}: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind, **_to_json(obj)}


def _to_json(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        # Go marshals these fields with omitempty: an empty string or a zero is absent in JSON.
        if value == "" or (value == 0 and not isinstance(value, bool)):
            continue
        out[field.name] = _value(field, value)
    return out


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if field.message_type is not None:
        if field.message_type.name == "Time":
            when = dt.datetime.fromtimestamp(value.seconds, dt.UTC)
            return when.strftime("%Y-%m-%dT%H:%M:%SZ")
        return _to_json(value)
    return value


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return {k: _scalar(value_field, v) for k, v in value.items()}
    if field.is_repeated:
        return [_scalar(field, v) for v in value]
    return _scalar(field, value)
