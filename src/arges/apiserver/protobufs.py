"""Protocol Buffers message classes declared as data, built with Google's protobuf runtime.

Two wire formats reach this server: gnostic's OpenAPI v2 document (which kubectl up to 1.28
reads) and Kubernetes' own protobuf encoding of built-in kinds (which kubectl 1.33 sends for
``kubectl create secret|configmap|namespace``). Rather than compiling ``.proto`` files (that
needs ``protoc``), each module lists its messages as ``(field, number, type)`` rows and
:func:`build` turns them into message classes; the protobuf runtime does all wire work.

Types: ``string``, ``bytes``, ``bool``, ``int32``, ``int64``, ``double``, another message's
name, any of those prefixed ``repeated ``, and ``map<K,V>`` with scalar keys.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

FieldSpec = tuple[str, int, str]

_SCALARS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
}
_LABEL_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_LABEL_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED


def _set_type(field: descriptor_pb2.FieldDescriptorProto, typ: str, package: str) -> None:
    if typ in _SCALARS:
        field.type = _SCALARS[typ]
    else:
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
        field.type_name = f".{package}.{typ}"


def build(
    package: str, messages: dict[str, list[FieldSpec]], *, syntax: str = "proto2"
) -> dict[str, type[Message]]:
    """Message classes for ``messages`` (name to field rows) in protobuf package ``package``.

    Raises:
        TypeError: when a row names an unknown type (from the protobuf runtime).
    """
    fdp = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}/arges.proto", package=package, syntax=syntax
    )
    for name, fields in messages.items():
        msg = fdp.message_type.add(name=name)
        for field_name, number, typ in fields:
            field = msg.field.add(name=field_name, number=number, json_name=field_name)
            if typ.startswith("map<"):
                key, value = typ[4:-1].split(",")
                entry_name = field_name[0].upper() + field_name[1:] + "Entry"
                entry = msg.nested_type.add(name=entry_name)
                entry.options.map_entry = True
                for sub_name, sub_number, sub_type in (("key", 1, key), ("value", 2, value)):
                    sub = entry.field.add(name=sub_name, number=sub_number, label=_LABEL_OPTIONAL)
                    _set_type(sub, sub_type.strip(), package)
                field.label = _LABEL_REPEATED
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".{package}.{name}.{entry_name}"
            elif typ.startswith("repeated "):
                field.label = _LABEL_REPEATED
                _set_type(field, typ.removeprefix("repeated "), package)
            else:
                field.label = _LABEL_OPTIONAL
                _set_type(field, typ, package)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in messages
    }
