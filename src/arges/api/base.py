"""Shared building blocks for resource models: the model base and common Kubernetes types.

Models use Kubernetes' JSON field names (camelCase) and are lenient on input (unknown fields
are ignored, so newer objects still parse), strict on types. They are the source the CRD
schemas are generated from (:mod:`arges.api.crds`), and the typed view controllers use.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ConditionStatus = Literal["True", "False", "Unknown"]


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


Time = Annotated[dt.datetime, AfterValidator(_utc)]
"""A point in time (``metav1.Time``: an RFC 3339 date-time). The API server also stores one
that names no zone (OpenAPI's ``date-time`` format allows it); it is read as UTC, so it can be
compared with the controllers' aware times."""


def parse_time(value: object) -> dt.datetime | None:
    """``value`` read as a :data:`Time` (an RFC 3339 date-time, UTC when it names no zone);
    None when it is not a string or not a date-time."""
    if not isinstance(value, str):
        return None
    try:
        return _utc(dt.datetime.fromisoformat(value))
    except ValueError:
        return None


class Model(BaseModel):
    """Base of every resource fragment: camelCase on the wire, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="ignore",
    )

    def to_json(self) -> dict[str, Any]:
        """The JSON form Kubernetes stores: camelCase keys, unset optional fields omitted."""
        data: dict[str, Any] = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        return data

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse the JSON form (raises pydantic.ValidationError on wrong types)."""
        return cls.model_validate(data)


class Object(Model):
    """A top-level Kubernetes object: metadata (kept as plain JSON) and its name and namespace."""

    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "")

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.metadata.get("labels") or {})


class LocalObjectReference(Model):
    """A reference to a cluster-scoped object of a known kind, by name."""

    name: str = Field(description="Name of the referent.")


class SecretReference(Model):
    """A reference to a Secret (namespaced) from a cluster-scoped object."""

    name: str = Field(description="Name of the Secret.")
    namespace: str = Field(default="default", description="Namespace of the Secret.")


class ObjectReference(Model):
    """A reference to any object (``core/v1 ObjectReference``, the fields Arges uses)."""

    api_version: str = Field(description="API version of the referent.")
    kind: str = Field(description="Kind of the referent.")
    name: str = Field(description="Name of the referent.")
    namespace: str | None = Field(default=None, description="Namespace of the referent.")
    uid: str | None = Field(default=None, description="UID of the referent.")


class Condition(Model):
    """``metav1.Condition``: one aspect of an object's state.

    See https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/
    api-conventions.md#typical-status-properties
    """

    type: str = Field(description="Type of condition in CamelCase.")
    status: ConditionStatus = Field(description="Status of the condition: True, False, Unknown.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was set based upon."
    )
    last_transition_time: Time = Field(
        description="Last time the condition transitioned from one status to another."
    )
    reason: str = Field(default="", description="Programmatic identifier of the last transition.")
    message: str = Field(default="", description="Human-readable details about the transition.")


class LabelSelectorRequirement(Model):
    """One ``matchExpressions`` entry of a label selector."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(Model):
    """``metav1.LabelSelector``: matchLabels and matchExpressions, all ANDed."""

    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class JSONPatchOperation(Model):
    """One RFC 6902 JSON Patch operation applied to a machine config."""

    op: Literal["add", "remove", "replace", "copy", "move", "test"] = Field(
        description="The operation (RFC 6902 section 4)."
    )
    path: str = Field(description="JSON Pointer (RFC 6901) to the target location.")
    from_: str | None = Field(
        default=None,
        alias="from",
        description="Source location for copy and move.",
    )
    value: Any = Field(default=None, description="The value for add, replace and test.")


BootFromDiskMethod = Literal["ipxe-exit", "http-404", "ipxe-sanboot"]
"""How a server that should boot from its disk is told so when it PXE-boots anyway:
an iPXE ``exit`` (back to the firmware boot order), an HTTP 404 (the firmware moves on), or
``sanboot`` of the first disk."""
