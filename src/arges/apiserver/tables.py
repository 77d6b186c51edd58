"""Server-side printing: ``meta.k8s.io/v1 Table`` responses for ``kubectl get``.

kubectl asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the cells the
server computes, so printer columns (a CRD's ``additionalPrinterColumns``, a built-in kind's
printer) are evaluated here. Column values follow kube-apiserver: ``date`` columns become ages
(``duration.HumanDuration``), JSONPath results that are missing leave the cell empty.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext.parser import parse as jsonpath_parse

from arges.apiserver.resources import PrinterColumn, Version
from arges.errors import ArgesError

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated."
)
AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is represented in RFC3339 form and is in UTC."
)


def name_column() -> PrinterColumn:
    """The Name column every kind but Event starts with."""
    return PrinterColumn(
        "Name",
        "string",
        json_path=".metadata.name",
        format="name",
        description=NAME_DESCRIPTION,
        compute=lambda o: o["metadata"].get("name", ""),
    )


def age_column() -> PrinterColumn:
    """The Age column (creation time as a human duration)."""
    return PrinterColumn(
        "Age",
        "date",
        json_path=".metadata.creationTimestamp",
        description=AGE_DESCRIPTION,
    )


class JSONPathError(ArgesError, ValueError):
    """A printer column or selectable field path that does not parse."""


@lru_cache(maxsize=1024)
def compile_path(path: str) -> JSONPath:
    """Compile a kube JSONPath (``.status.phase``, ``{.spec.x}``, filters allowed).

    Raises:
        JSONPathError: when the path does not parse.
    """
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if not text.startswith("."):
        raise JSONPathError(f"{path!r} must start with '.' (e.g. .status.phase)")
    try:
        return jsonpath_parse("$" + _quote_escaped(text))
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
        raise JSONPathError(f"{path!r} is not a valid JSONPath: {exc}") from exc


def _quote_escaped(text: str) -> str:
    """Kube JSONPath field names with escaped dots (``.labels.a\\.b/c``) as quoted names.

    client-go's JSONPath reads ``\\.`` inside a field name as a literal dot, which Sidero's
    printer columns use for label keys; jsonpath_ng spells such names in quotes instead.
    """
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        if c == "." and depth == 0:
            j = i + 1
            name: list[str] = []
            while j < len(text) and text[j] not in ".[":
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                name.append(text[j])
                j += 1
            segment = "".join(name)
            out.append("." + (f'"{segment}"' if text.find("\\", i, j) >= 0 else segment))
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)


def evaluate(path: str, obj: dict[str, Any]) -> Any:
    """The value at ``path`` in ``obj``: None when absent, a comma-joined string when several."""
    matches = [m.value for m in compile_path(path).find(obj)]
    if not matches:
        return None
    if len(matches) == 1:
        return matches[0]
    return ",".join(str(m) for m in matches)


def human_duration(seconds: float) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``: 5s, 3m20s, 2d4h, 3y."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: str) -> dt.datetime | None:
    """Parse an RFC 3339 timestamp (``2026-11-24T15:04:13Z``, fractions allowed)."""
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def age(value: Any, now: dt.datetime) -> str:
    """A timestamp as kubectl shows ages; ``<unknown>`` when missing or malformed."""
    when = parse_time(value) if isinstance(value, str) else None
    if when is None:
        return "<unknown>"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return human_duration((now - when).total_seconds())


def _cell(column: PrinterColumn, obj: dict[str, Any], now: dt.datetime) -> Any:
    value = column.compute(obj) if column.compute else evaluate(column.json_path, obj)
    if column.type == "date":
        return age(value, now) if value is not None else "<unknown>"
    return value


def _metadata_only(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def column_definitions(version: Version) -> list[dict[str, Any]]:
    """The ``columnDefinitions`` of a Table for ``version``."""
    return [
        {
            "name": c.name,
            "type": "string" if c.type == "date" else c.type,
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        }
        for c in version.columns
    ]


def build_table(
    version: Version,
    objects: Iterable[dict[str, Any]],
    *,
    include_object: str,
    resource_version: str,
    continue_token: str = "",
    remaining: int | None = None,
    headers: bool = True,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1 Table`` of ``objects``.

    ``include_object`` is the ``includeObject`` query parameter: ``None``, ``Metadata`` (the
    default) or ``Object``.
    """
    now = dt.datetime.now(dt.UTC)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [_cell(c, obj, now) for c in version.columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _metadata_only(obj)
        rows.append(row)
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(version) if headers else None,
        "rows": rows,
    }
    return table
