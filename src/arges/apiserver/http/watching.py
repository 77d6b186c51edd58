"""Watches over HTTP: a chunked stream of watch events, encoded as the client asked.

The events come from :func:`arges.apiserver.watch.watch`; here they are written one JSON
line each, as the object (JSON or YAML asked), a table row, or metadata only, with bookmarks
shaped as client-go's decoders expect them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from arges.apiserver import codec
from arges.apiserver.errors import BadRequest
from arges.apiserver.http.incoming import Incoming, LocalRequest, LocalStream
from arges.apiserver.http.negotiation import JSON, negotiate
from arges.apiserver.http.params import flag, non_negative_int
from arges.apiserver.resources import ResourceType, Version
from arges.apiserver.rest import Rest
from arges.apiserver.rest.options import ListOptions, parse_rv
from arges.apiserver.tables import build_table
from arges.apiserver.watch import INITIAL_EVENTS_END, WatchEvent, WatchOptions, watch


async def serve_watch(
    request: Incoming,
    rest: Rest,
    rt: ResourceType,
    version: Version,
    namespace: str | None,
    opts: ListOptions,
    *,
    bookmark_interval: float,
    watches: set[asyncio.Task[Any]],
) -> web.StreamResponse:
    """Answer a watch request: a chunked stream of events until the watch times out
    (``timeoutSeconds``, else 30 minutes) or the client goes; the task is in ``watches``
    meanwhile, so the server can end it on shutdown. A local request's events go to its
    :class:`~arges.apiserver.http.incoming.LocalStream`, and the answer returned is only
    its status and headers.

    Raises:
        BadRequest: ``sendInitialEvents`` without ``resourceVersionMatch=NotOlderThan``, a
            malformed resourceVersion or timeout.
    """
    neg = negotiate(request.headers.get("Accept", ""))
    query = request.query
    timeout = float(non_negative_int(query, "timeoutSeconds") or 1800)
    send_initial = flag(query.get("sendInitialEvents"))
    if send_initial and opts.resource_version_match != "NotOlderThan":
        raise BadRequest(
            "sendInitialEvents: Forbidden: sendInitialEvents requires setting "
            "resourceVersionMatch to NotOlderThan"
        )
    wopts = WatchOptions(
        bookmarks=flag(query.get("allowWatchBookmarks")),
        send_initial_events=send_initial,
        timeout=timeout,
        bookmark_interval=bookmark_interval,
    )
    if not send_initial and opts.resource_version not in ("", "0"):
        parse_rv(opts.resource_version)
    include = query.get("includeObject", "Metadata")
    resp = web.StreamResponse(
        status=200,
        headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"},
    )
    sink: web.StreamResponse | LocalStream
    if isinstance(request, web.Request):
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        sink = resp
    elif isinstance(request, LocalRequest) and request.stream is not None:
        # From the API server's process: the same events, to its stream instead of a socket.
        sink = request.stream
        sink.start()
    else:
        raise BadRequest("a watch is served over HTTP or to a local stream only")
    task = asyncio.current_task()
    if task is not None:
        watches.add(task)
    stream = watch(rest, rt, version, namespace, opts, wopts)
    try:
        async for batch in stream:
            await sink.write(
                b"".join(encode_event(rest, ev, rt, version, neg.form, include) for ev in batch)
            )
        await sink.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        await stream.aclose()
        if task is not None:
            watches.discard(task)
    return resp


def encode_event(
    rest: Rest, ev: WatchEvent, rt: ResourceType, version: Version, form: str, include: str
) -> bytes:
    """One watch event as a JSON line, its object in ``form`` (json, yaml, table, partial;
    ``include`` is a table's ``includeObject``)."""
    if ev.type == "ERROR":
        return codec.dumps({"type": "ERROR", "object": ev.status}) + b"\n"
    if ev.type == "BOOKMARK":
        meta: dict[str, Any] = {"resourceVersion": str(ev.rv)}
        if ev.initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        if form == "table":
            obj: dict[str, Any] = {
                "kind": "Table",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "columnDefinitions": None,
                "rows": None,
            }
        elif form == "partial":
            # A metadata-only watch (client-go's metadata informers) decodes every
            # event, bookmarks included, as PartialObjectMetadata.
            obj = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
            }
        else:
            obj = {
                "kind": rt.kind,
                "apiVersion": rt.api_version(version.name),
                "metadata": meta,
            }
        return codec.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"
    assert ev.entry is not None
    if form in ("json", "yaml"):
        raw = rest.render(ev.entry, rt, version)
        return b'{"type":"' + ev.type.encode() + b'","object":' + raw + b"}\n"
    view = rest.view(ev.entry, rt, version)
    if form == "table":
        out: Any = build_table(
            version, [view], include_object=include, resource_version=str(ev.entry.rv)
        )
    else:
        out = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": view.get("metadata", {}),
        }
    return codec.dumps({"type": ev.type, "object": out}) + b"\n"
