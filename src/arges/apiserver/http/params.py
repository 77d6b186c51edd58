"""What a request asks for beyond its path: query parameters and bodies, decoded.

The options of writes, deletes (from the query and a ``DeleteOptions`` body, as
kube-apiserver merges them) and lists, and request bodies in JSON, YAML or Kubernetes
protobuf, within kube-apiserver's size limit. Bad values are 400 with kube's wording. The
answer to a large body is encoded here too (:func:`encode`), on the threads that decode
large bodies and under the same settings.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from arges.apiserver import codec, kubeproto
from arges.apiserver.apply import parse_force
from arges.apiserver.errors import BadRequest, UnsupportedMediaType
from arges.apiserver.http.negotiation import JSON
from arges.apiserver.resources import ResourceType, Version
from arges.apiserver.rest.options import DeleteOptions, ListOptions, WriteOptions
from arges.apiserver.selectors import parse_field_selector, parse_label_selector

if TYPE_CHECKING:
    from arges.apiserver.http.incoming import Incoming

MAX_BODY_BYTES = 3 * 1024 * 1024
"""kube-apiserver's request body limit."""
EXPANDED_BODY_BYTES = 2 * MAX_BODY_BYTES
"""How large (as JSON) a YAML body may grow through its aliases: twice the byte limit, since
JSON spells out what YAML leaves implicit (quotes, braces)."""
INLINE_DECODE_BYTES = 64 * 1024
"""Bodies up to this size are decoded on the event loop (well under a millisecond as JSON);
larger ones in a worker thread, since a 3 MiB body takes about 0.1 s as JSON and seconds as
YAML, and every other request would wait that long (``benchmarks/large_bodies.py``)."""
_DECODERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="arges-decode")
"""The threads large bodies are decoded on: their own, so a flood of them queues here and
not before the process's other thread work (asset copies, Redfish calls); two, since under
the GIL more would not decode faster. Started when first needed."""


async def decode(
    raw: bytes, media: str, *, kind: str = "", expanded_limit: int = EXPANDED_BODY_BYTES
) -> Any:
    """:func:`codec.decode_body` for a request body: inline when it is small, on a decoding
    thread when larger than :data:`INLINE_DECODE_BYTES`, so the event loop keeps serving.

    Raises what :func:`codec.decode_body` raises.
    """
    if len(raw) <= INLINE_DECODE_BYTES:
        return codec.decode_body(raw, media, kind=kind, expanded_limit=expanded_limit)
    return await asyncio.get_running_loop().run_in_executor(
        _DECODERS, _decode_large, raw, media, kind, expanded_limit
    )


async def encode(obj: Any, *, large: bool) -> bytes:
    """JSON bytes for an answer: inline, or when ``large`` on a decoding thread in pieces
    (:func:`codec.dumps_in_pieces`), so the event loop waits for no single long orjson call
    (2-8 ms for a 3 MiB object, the GIL held throughout).

    Raises:
        orjson.JSONEncodeError: a value JSON cannot hold.
    """
    if not large:
        return codec.dumps(obj)
    return await asyncio.get_running_loop().run_in_executor(_DECODERS, _encode_large, obj)


def _encode_large(obj: Any) -> bytes:
    with _WHILE_DECODING:
        return codec.dumps_in_pieces(obj)


def _decode_large_proto(raw: bytes) -> Any:
    with _WHILE_DECODING:
        return kubeproto.decode(raw)


def _decode_large(raw: bytes, media: str, kind: str, expanded_limit: int) -> Any:
    with _WHILE_DECODING:
        return codec.decode_body(raw, media, kind=kind, expanded_limit=expanded_limit)


DECODING_SWITCH_INTERVAL = 0.0001
"""Seconds a thread may hold the GIL while another waits for it, while a large body decodes."""


class _WhileDecoding:
    """What the process runs with while any thread decodes a large body (or encodes the
    answer to one): the cyclic garbage collector off, and a short GIL switch interval
    (:data:`DECODING_SWITCH_INTERVAL`).

    Decoding allocates objects by the million (a 3 MiB YAML body composes about four million
    nodes and marks before it is built); each full collection they trigger walks the whole
    heap holding the GIL, stalling the event loop for up to 0.5 s at a time. What decoding
    allocates is freed by reference counting, so nothing is lost by pausing.

    The event loop gives the GIL up at every TLS record it decrypts (16 KiB: about 190 for a
    3 MiB body arriving) and at every socket call; each time, the decoding thread takes it and
    keeps it for the switch interval. At ``arges up``'s 0.5 ms, a request behind a large body
    waited 19-26 ms at the 99th percentile (``benchmarks/large_bodies.py``); at 0.1 ms the
    wait is a fifth, and the decode, which holds no one up, a little slower.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._resume_gc = False
        self._interval = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._resume_gc = gc.isenabled()
                gc.disable()
                self._interval = sys.getswitchinterval()
                sys.setswitchinterval(min(self._interval, DECODING_SWITCH_INTERVAL))
            self._inside += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                sys.setswitchinterval(self._interval)
                if self._resume_gc:
                    gc.enable()


_WHILE_DECODING = _WhileDecoding()


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


def write_options(request: Incoming) -> WriteOptions:
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


async def read_body(request: Incoming, rt: ResourceType) -> Any:
    """The request body decoded (JSON, YAML or Kubernetes protobuf).

    Raises:
        UnsupportedMediaType: another Content-Type.
        BadRequest: a body that does not decode, or grows past the limit.
    """
    media = request.content_type
    if media == kubeproto.MEDIA_TYPE:
        raw = await request.read()
        if len(raw) <= INLINE_DECODE_BYTES:
            return kubeproto.decode(raw)
        return await asyncio.get_running_loop().run_in_executor(_DECODERS, _decode_large_proto, raw)
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
    return await decode(await request.read(), media, kind=rt.kind)


async def delete_options(request: Incoming) -> DeleteOptions:
    """The :class:`DeleteOptions` of a DELETE: the query's and a ``DeleteOptions`` body's
    (``orphanDependents`` read as the propagation policy it stands for).

    Raises:
        BadRequest: a body that is not an object, a ``dryRun`` other than All.
    """
    query = request.query
    body: dict[str, Any] = {}
    raw = await request.read()
    if raw.strip():
        decoded = await decode(raw, request.content_type or JSON)
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
