"""What a request asks for beyond its path: query parameters and bodies, decoded.

The options of writes, deletes (from the query and a ``DeleteOptions`` body, as
kube-apiserver merges them) and lists, and request bodies in JSON, YAML or Kubernetes
protobuf, within kube-apiserver's size limit. Bad values are 400 with kube's wording.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from arges.apiserver import codec, kubeproto
from arges.apiserver.apply import parse_force
from arges.apiserver.errors import BadRequest, UnsupportedMediaType
from arges.apiserver.http.negotiation import JSON
from arges.apiserver.resources import ResourceType, Version
from arges.apiserver.rest.options import DeleteOptions, ListOptions, WriteOptions
from arges.apiserver.selectors import parse_field_selector, parse_label_selector

MAX_BODY_BYTES = 3 * 1024 * 1024
"""kube-apiserver's request body limit."""
EXPANDED_BODY_BYTES = 2 * MAX_BODY_BYTES
"""How large (as JSON) a YAML body may grow through its aliases: twice the byte limit, since
JSON spells out what YAML leaves implicit (quotes, braces)."""


def flag(value: str | None) -> bool:
    """A boolean query parameter: ``true`` or ``1`` (any case) is true, anything else false."""
    return (value or "").lower() in ("true", "1")


def non_negative_int(query: Any, key: str) -> int:
    """Query parameter ``key`` as a non-negative integer (0 when absent or empty).

    Raises:
        BadRequest: not an integer, or negative.
    """
    raw = query.get(key)
    if raw in (None, ""):
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f'{key}: Invalid value: "{raw}": must be an integer') from None
    if value < 0:
        raise BadRequest(f'{key}: Invalid value: "{raw}": must be greater than or equal to 0')
    return value


def write_options(request: web.Request) -> WriteOptions:
    """The :class:`WriteOptions` of a create, update or patch request.

    Raises:
        BadRequest: a ``dryRun`` other than All, an unknown ``fieldValidation``, a bad
            ``force``.
    """
    query = request.query
    dry_run = query.getall("dryRun", [])
    for value in dry_run:
        if value != "All":
            raise BadRequest(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    validation = query.get("fieldValidation") or "Warn"
    if validation not in ("Ignore", "Warn", "Strict"):
        raise BadRequest(
            f'fieldValidation: Unsupported value: "{validation}": supported values: "Ignore", '
            '"Strict", "Warn"'
        )
    return WriteOptions(
        dry_run=bool(dry_run),
        field_validation=validation,
        field_manager=query.get("fieldManager", ""),
        user_agent=request.headers.get("User-Agent", ""),
        force=parse_force(query.get("force")),
    )


async def read_body(request: web.Request, rt: ResourceType) -> Any:
    """The request body decoded (JSON, YAML or Kubernetes protobuf).

    Raises:
        UnsupportedMediaType: another Content-Type.
        BadRequest: a body that does not decode, or grows past the limit.
    """
    media = request.content_type
    if media == kubeproto.MEDIA_TYPE:
        return kubeproto.decode(await request.read())
    if media not in (
        JSON,
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "application/octet-stream",
        "",
    ):
        raise UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types "
            f'include: application/json, application/yaml (got "{media}")'
        )
    return codec.decode_body(
        await request.read(), media, kind=rt.kind, expanded_limit=EXPANDED_BODY_BYTES
    )


async def delete_options(request: web.Request) -> DeleteOptions:
    """The :class:`DeleteOptions` of a DELETE: the query's and a ``DeleteOptions`` body's
    (``orphanDependents`` read as the propagation policy it stands for).

    Raises:
        BadRequest: a body that is not an object, a ``dryRun`` other than All.
    """
    query = request.query
    body: dict[str, Any] = {}
    raw = await request.read()
    if raw.strip():
        decoded = codec.decode_body(raw, request.content_type or JSON)
        if not isinstance(decoded, dict):
            raise BadRequest("the request body must be a DeleteOptions object")
        body = decoded
    dry_run = list(body.get("dryRun") or []) + query.getall("dryRun", [])
    for value in dry_run:
        if value != "All":
            raise BadRequest(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    policy = query.get("propagationPolicy") or body.get("propagationPolicy")
    orphan = body.get("orphanDependents")
    if "orphanDependents" in query:
        orphan = flag(query.get("orphanDependents"))
    if policy is None and orphan is not None:
        policy = "Orphan" if orphan else "Background"
    pre = body.get("preconditions") or {}
    return DeleteOptions(
        propagation=policy,
        uid=pre.get("uid"),
        resource_version=pre.get("resourceVersion"),
        dry_run=bool(dry_run),
    )


def list_options(query: Any, rt: ResourceType, version: Version) -> ListOptions:
    """The :class:`ListOptions` of a list, watch or collection delete.

    Raises:
        BadRequest: a malformed selector or limit, a field the kind cannot select.
    """
    return ListOptions(
        labels=parse_label_selector(query.get("labelSelector")),
        fields=parse_field_selector(query.get("fieldSelector"), rt.field_labels(version)),
        limit=non_negative_int(query, "limit"),
        continue_token=query.get("continue", ""),
        resource_version=query.get("resourceVersion", ""),
        resource_version_match=query.get("resourceVersionMatch", ""),
    )
