"""Responses: objects, lists, Status errors and deletions, encoded as the client asked.

JSON (stored bytes as they are when no change is due), YAML, server-side tables or metadata
only (:mod:`~arges.apiserver.http.negotiation`), with the ``Warning`` headers a write
collected. Large lists are streamed in chunks, and any other large body is written in
slices (:func:`sent_in_slices`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from arges.apiserver import codec
from arges.apiserver.entries import Entry
from arges.apiserver.errors import StatusError
from arges.apiserver.http.negotiation import JSON, negotiate
from arges.apiserver.http.params import encode
from arges.apiserver.resources import ResourceType, Version
from arges.apiserver.rest import Rest
from arges.apiserver.rest.options import ListOptions
from arges.apiserver.tables import build_table

if TYPE_CHECKING:
    from arges.apiserver.http.incoming import Incoming

LIST_CHUNK = 500
"""Objects per write when a list response is streamed."""
SLICED_BYTES = 256 * 1024
"""Bodies larger than this are written in slices of :data:`SLICE_BYTES`."""
SLICE_BYTES = 64 * 1024


def deleted_status(rt: ResourceType, name: str, uid: str) -> dict[str, Any]:
    """The ``Status`` Success a DELETE answers once the object is gone (the generic registry's
    ``finalizeDelete``); ``group`` is left out for the core group, as its JSON omits empties."""
    details: dict[str, Any] = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details.update(kind=rt.plural, uid=uid)
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _warning(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def status_response(err: StatusError) -> web.Response:
    """The error's ``Status`` body with its code."""
    return web.Response(status=err.code, body=codec.dumps(err.status()), content_type=JSON)


def json_response(obj: Any, status: int = 200) -> web.Response:
    """``obj`` as a JSON response."""
    return web.Response(status=status, body=codec.dumps(obj), content_type=JSON)


def warned(resp: web.StreamResponse, warnings: list[str]) -> None:
    """Add one ``Warning`` header per distinct warning, in order (code 299, as kube)."""
    for text in dict.fromkeys(warnings):
        resp.headers.add("Warning", _warning(text))


async def entry_response(
    request: Incoming, rest: Rest, rt: ResourceType, version: Version, entry: Entry
) -> web.Response:
    """A stored object at ``version``, in the representation the client asked for."""
    neg = negotiate(request.headers.get("Accept", ""))
    if neg.form == "json":
        return web.Response(body=rest.render(entry, rt, version), content_type=JSON)
    return await object_response(request, rt, version, rest.view(entry, rt, version), [], 200)


async def object_response(
    request: Incoming,
    rt: ResourceType,
    version: Version,
    obj: dict[str, Any],
    warnings: list[str],
    status: int,
) -> web.Response:
    """``obj`` in the representation the client asked for, with the ``Warning`` headers.

    The answer to a large body (over :data:`codec.YIELDING_BYTES`) is encoded as JSON on a
    decoding thread (:func:`arges.apiserver.http.params.encode`): the object is as large.
    """
    neg = negotiate(request.headers.get("Accept", ""))
    if neg.form == "table":
        out: Any = build_table(
            version,
            [obj],
            include_object=request.query.get("includeObject", "Metadata"),
            resource_version=obj["metadata"].get("resourceVersion", ""),
        )
    elif neg.form == "partial":
        out = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {}),
        }
    else:
        out = obj
    if neg.form == "yaml":
        resp = web.Response(
            status=status,
            text=yaml.safe_dump(out, sort_keys=False),
            content_type="application/yaml",
        )
    else:
        large = (request.content_length or 0) > codec.YIELDING_BYTES
        resp = web.Response(status=status, body=await encode(out, large=large), content_type=JSON)
    warned(resp, warnings)
    return resp


async def list_response(
    request: Incoming,
    rest: Rest,
    rt: ResourceType,
    version: Version,
    namespace: str | None,
    opts: ListOptions,
) -> web.StreamResponse:
    """A page of a list in the representation the client asked for (JSON in chunks when
    it is long).

    Raises:
        the errors of :meth:`~arges.apiserver.rest.Rest.list_objects`.
    """
    neg = negotiate(request.headers.get("Accept", ""))
    result = await rest.list_objects(rt, version, namespace, opts)
    meta: dict[str, Any] = {"resourceVersion": str(result.rv)}
    if result.continue_token:
        meta["continue"] = result.continue_token
        meta["remainingItemCount"] = result.remaining
    if neg.form == "table":
        table = build_table(
            version,
            (rest.view(e, rt, version) for e in result.entries),
            include_object=request.query.get("includeObject", "Metadata"),
            resource_version=str(result.rv),
            continue_token=result.continue_token,
            remaining=result.remaining,
        )
        return json_response(table)
    if neg.form == "partial":
        return json_response(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": [
                    {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": e.object().get("metadata", {}),
                    }
                    for e in result.entries
                ],
            }
        )
    head = (
        codec.dumps(
            {
                "kind": rt.list_kind_name,
                "apiVersion": rt.api_version(version.name),
                "metadata": meta,
            }
        )[:-1]
        + b',"items":['
    )
    if neg.form == "yaml":
        body = head + b",".join(rest.render(e, rt, version) for e in result.entries)
        return web.Response(
            text=yaml.safe_dump(codec.loads(body + b"]}"), sort_keys=False),
            content_type="application/yaml",
        )
    if len(result.entries) <= LIST_CHUNK or not isinstance(request, web.BaseRequest):
        # Whole, also to a local caller, which takes the answer as it is (no connection).
        items = b",".join(rest.render(e, rt, version) for e in result.entries)
        return web.Response(body=head + items + b"]}", content_type=JSON)
    # Large lists go out in chunks, each written when the client has taken the last, so a
    # full list of 10,000 objects never holds a second copy of itself in memory.
    resp = web.StreamResponse(headers={"Content-Type": JSON})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(head)
    entries = result.entries
    for start in range(0, len(entries), LIST_CHUNK):
        chunk = b",".join(rest.render(e, rt, version) for e in entries[start : start + LIST_CHUNK])
        await resp.write(chunk if start == 0 else b"," + chunk)
    await resp.write(b"]}")
    await resp.write_eof()
    return resp


async def sent_in_slices(request: web.Request, response: web.Response) -> web.StreamResponse:
    """``response`` (status, headers and body unchanged, with its ``Content-Length``) sent
    now, its body :data:`SLICE_BYTES` at a time, the event loop free between slices.

    Written in one piece, a 3 MiB body is encrypted and copied to the socket in one callback
    of the event loop (5-8 ms), and every other request waits behind it: ``/readyz`` during
    3 MiB creates (``benchmarks/large_bodies.py``), p99 23-26 ms in one piece, 13-20 ms in
    slices.
    """
    body = response.body
    assert isinstance(body, bytes)
    sliced = web.StreamResponse(status=response.status, reason=response.reason)
    sliced.headers.update(response.headers)
    sliced.content_length = len(body)
    await sliced.prepare(request)
    view = memoryview(body)
    for start in range(0, len(body), SLICE_BYTES):
        await sliced.write(view[start : start + SLICE_BYTES])
        # write() returns at once while the transport's buffer is below its high-water
        # mark: yield, so the slices are what the loop interleaves with other work.
        await asyncio.sleep(0)
    await sliced.write_eof()
    return sliced
