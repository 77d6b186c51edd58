"""Event (core/v1): reports about objects, with kubectl's columns and field selectors.

``pkg/registry/core/event/strategy.go`` and ``ValidateEventCreate``: an Event lives in its
object's namespace (``default`` for cluster-scoped objects), and may be selected by its
involved object, reason, source and type.
"""

from __future__ import annotations

from typing import Any

from arges.apiserver.builtin.strategy import BuiltinStrategy
from arges.apiserver.errors import Cause
from arges.apiserver.metaschema import INT32, STRING, TIME, desc, root_schema
from arges.apiserver.resources import PrinterColumn, ResourceType, Version
from arges.apiserver.schema import Schema
from arges.apiserver.validation import invalid

OBJECT_REFERENCE: dict[str, Any] = {
    "type": "object",
    "description": "ObjectReference contains enough information to let you inspect or modify "
    "the referred object.",
    "properties": {
        "apiVersion": STRING,
        "kind": STRING,
        "name": STRING,
        "namespace": STRING,
        "uid": STRING,
        "resourceVersion": STRING,
        "fieldPath": STRING,
    },
}

_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


class EventStrategy(BuiltinStrategy):
    """``pkg/registry/core/event/strategy.go`` and ``ValidateEventCreate``."""

    field_labels = frozenset(_EVENT_FIELDS)

    def validate(self, rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
        ref = obj.get("involvedObject") or {}
        namespace = obj["metadata"].get("namespace", "")
        ref_ns = ref.get("namespace") or ""
        if ref_ns and ref_ns != namespace:
            return [invalid("involvedObject.namespace", ref_ns, "does not match event.namespace")]
        if not ref_ns and namespace not in ("default", ""):
            return [
                invalid(
                    "involvedObject.namespace",
                    ref_ns,
                    "does not match event.namespace (events about cluster-scoped objects "
                    "belong in namespace default)",
                )
            ]
        return []

    def fields(self, obj: dict[str, Any]) -> dict[str, str]:
        ref = obj.get("involvedObject") or {}
        out = {f"involvedObject.{k}": str(ref.get(k, "")) for k in OBJECT_REFERENCE["properties"]}
        out["reason"] = obj.get("reason", "")
        out["reportingComponent"] = obj.get("reportingComponent", "")
        out["source"] = (obj.get("source") or {}).get("component", "")
        out["type"] = obj.get("type", "")
        return out


EVENT_SCHEMA = root_schema(
    "Event is a report of an event somewhere in the cluster.",
    involvedObject=desc(OBJECT_REFERENCE, "The object that this event is about."),
    reason=desc(STRING, "A short, machine understandable string for the transition."),
    message=desc(STRING, "A human-readable description of the status of this operation."),
    source={
        "type": "object",
        "properties": {"component": STRING, "host": STRING},
        "description": "The component reporting this event.",
    },
    firstTimestamp=TIME,
    lastTimestamp=TIME,
    count=INT32,
    type=desc(STRING, "Type of this event (Normal, Warning)."),
    eventTime={**TIME, "nullable": True, "format": "date-time"},
    series={
        "type": "object",
        "properties": {"count": INT32, "lastObservedTime": TIME},
    },
    action=STRING,
    related=OBJECT_REFERENCE,
    reportingComponent=STRING,
    reportingInstance=STRING,
)
EVENT_SCHEMA["required"] = ["involvedObject"]


def _event_last_seen(obj: dict[str, Any]) -> Any:
    series = obj.get("series") or {}
    return (
        series.get("lastObservedTime")
        or obj.get("lastTimestamp")
        or obj.get("eventTime")
        or obj.get("firstTimestamp")
        or obj["metadata"].get("creationTimestamp")
    )


def _event_object(obj: dict[str, Any]) -> str:
    ref = obj.get("involvedObject") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _event_source(obj: dict[str, Any]) -> str:
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingComponent", "")
    host = source.get("host")
    return f"{component}, {host}" if host else component


EVENT_COLUMNS = (
    PrinterColumn("Last Seen", "date", compute=_event_last_seen),
    PrinterColumn("Type", "string", compute=lambda o: o.get("type", "")),
    PrinterColumn("Reason", "string", compute=lambda o: o.get("reason", "")),
    PrinterColumn("Object", "string", compute=_event_object),
    PrinterColumn(
        "Subobject",
        "string",
        priority=1,
        compute=lambda o: (o.get("involvedObject") or {}).get("fieldPath", ""),
    ),
    PrinterColumn("Source", "string", priority=1, compute=_event_source),
    PrinterColumn("Message", "string", compute=lambda o: o.get("message", "")),
    PrinterColumn(
        "First Seen",
        "date",
        priority=1,
        compute=lambda o: o.get("firstTimestamp") or o.get("eventTime"),
    ),
    PrinterColumn("Count", "integer", priority=1, compute=lambda o: o.get("count", 1)),
    PrinterColumn("Name", "string", priority=1, compute=lambda o: o["metadata"]["name"]),
)


def event_type() -> ResourceType:
    """The Event resource type."""
    return ResourceType(
        group="",
        plural="events",
        singular="event",
        kind="Event",
        namespaced=True,
        short_names=("ev",),
        strategy=EventStrategy(),
        versions=(
            Version("v1", Schema.compile(EVENT_SCHEMA), storage=True, columns=EVENT_COLUMNS),
        ),
    )
