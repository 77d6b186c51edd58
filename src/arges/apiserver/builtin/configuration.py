"""Secret and ConfigMap (core/v1): data stores with config keys and immutability.

``pkg/registry/core/secret/strategy.go`` and ``.../configmap/strategy.go``: keys are config
keys, a Secret's ``stringData`` is folded into ``data`` and its data is at most 1 MiB, an
``immutable`` object's data cannot change, and a Secret's type cannot change.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from arges.apiserver.builtin.strategy import BuiltinStrategy
from arges.apiserver.errors import Cause
from arges.apiserver.metaschema import BOOL, STRING, STRING_MAP, desc, root_schema
from arges.apiserver.resources import PrinterColumn, ResourceType, Version
from arges.apiserver.schema import Schema
from arges.apiserver.tables import age_column, name_column
from arges.apiserver.validation import forbidden, invalid

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_SECRET_BYTES = 1024 * 1024


def _key_causes(field: str, keys: Any) -> list[Cause]:
    causes = []
    for key in keys or {}:
        if not _CONFIG_KEY.match(key) or len(key) > 253:
            causes.append(
                invalid(
                    f"{field}[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                    "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                    "is '[-._a-zA-Z0-9]+')",
                )
            )
    return causes


def _immutable_causes(
    new: dict[str, Any], old: dict[str, Any], keys: tuple[str, ...]
) -> list[Cause]:
    if not old.get("immutable"):
        return []
    causes = []
    if not new.get("immutable"):
        causes.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for key in keys:
        if (new.get(key) or {}) != (old.get(key) or {}):
            causes.append(forbidden(key, "field is immutable when `immutable` is set"))
    return causes


class SecretStrategy(BuiltinStrategy):
    """``pkg/registry/core/secret/strategy.go``; ``stringData`` is folded into ``data``."""

    field_labels = frozenset({"type"})

    def prepare_for_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        _fold_string_data(obj)
        obj.setdefault("type", "Opaque")

    def prepare_for_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> None:
        _fold_string_data(new)
        new.setdefault("type", old.get("type", "Opaque"))

    def validate(self, rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
        causes = _key_causes("data", obj.get("data"))
        total = sum(len(base64.b64decode(v or "")) for v in (obj.get("data") or {}).values())
        if total > MAX_SECRET_BYTES:
            causes.append(
                Cause(
                    "data",
                    f"Too long: must have at most {MAX_SECRET_BYTES} bytes",
                    "FieldValueTooLong",
                )
            )
        return causes

    def validate_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> list[Cause]:
        causes = _immutable_causes(new, old, ("data",))
        if new.get("type") != old.get("type"):
            causes.append(invalid("type", new.get("type"), "field is immutable"))
        return causes

    def fields(self, obj: dict[str, Any]) -> dict[str, str]:
        return {"type": obj.get("type", "")}


def _fold_string_data(obj: dict[str, Any]) -> None:
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


SECRET_SCHEMA = root_schema(
    "Secret holds secret data of a certain type. The total bytes of the values in the Data "
    "field must be less than 1 MiB.",
    data=desc(
        {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "Data contains the secret data; values are base64-encoded.",
    ),
    stringData=desc(
        STRING_MAP,
        "stringData allows specifying non-binary secret data in string form. It is a write-only "
        "input field merged into the data field on write.",
    ),
    type=desc(STRING, "Used to facilitate programmatic handling of secret data."),
    immutable=desc(BOOL, "If true, the data stored in the Secret cannot be updated."),
)


class ConfigMapStrategy(BuiltinStrategy):
    """``pkg/registry/core/configmap/strategy.go``."""

    def validate(self, rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
        causes = _key_causes("data", obj.get("data")) + _key_causes(
            "binaryData", obj.get("binaryData")
        )
        for key in set(obj.get("data") or {}) & set(obj.get("binaryData") or {}):
            causes.append(invalid("data", key, "duplicate of key present in binaryData"))
        return causes

    def validate_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> list[Cause]:
        return _immutable_causes(new, old, ("data", "binaryData"))


CONFIGMAP_SCHEMA = root_schema(
    "ConfigMap holds configuration data for pods to consume.",
    data=desc(STRING_MAP, "Data contains the configuration data (UTF-8 values)."),
    binaryData=desc(
        {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "BinaryData contains the binary data (base64-encoded values).",
    ),
    immutable=desc(BOOL, "If true, the data stored in the ConfigMap cannot be updated."),
)


def secret_type() -> ResourceType:
    """The Secret resource type."""
    return ResourceType(
        group="",
        plural="secrets",
        singular="secret",
        kind="Secret",
        namespaced=True,
        strategy=SecretStrategy(),
        versions=(
            Version(
                "v1",
                Schema.compile(SECRET_SCHEMA),
                storage=True,
                columns=(
                    name_column(),
                    PrinterColumn(
                        "Type",
                        "string",
                        description="The type of the secret",
                        compute=lambda o: o.get("type", ""),
                    ),
                    PrinterColumn(
                        "Data",
                        "string",
                        description="The number of entries in the secret",
                        compute=lambda o: len(o.get("data") or {}),
                    ),
                    age_column(),
                ),
            ),
        ),
    )


def configmap_type() -> ResourceType:
    """The ConfigMap resource type."""
    return ResourceType(
        group="",
        plural="configmaps",
        singular="configmap",
        kind="ConfigMap",
        namespaced=True,
        short_names=("cm",),
        strategy=ConfigMapStrategy(),
        versions=(
            Version(
                "v1",
                Schema.compile(CONFIGMAP_SCHEMA),
                storage=True,
                columns=(
                    name_column(),
                    PrinterColumn(
                        "Data",
                        "string",
                        description="The number of entries in the config map",
                        compute=lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                    ),
                    age_column(),
                ),
            ),
        ),
    )
