"""The HTTP face of the API server: routing, authentication, negotiation, error translation.

Paths follow the Kubernetes API layout::

    /api/v1[/namespaces/{ns}]/{plural}[/{name}[/status]]
    /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/status]]

plus discovery (``/api``, ``/apis``, ...), ``/openapi/v3``, ``/version`` and the health
endpoints (``/healthz``, ``/livez``, ``/readyz``, which need no token, as in kube-apiserver).
Every other request needs ``Authorization: Bearer <token>``, else 401.

Responses are JSON (or YAML when asked); list and get requests that ask for
``as=Table`` get server-side printed tables, ``as=PartialObjectMetadata[List]`` metadata only.
Every :class:`~arges.apiserver.errors.StatusError` raised below is turned into its ``Status``
body here, and nowhere else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from arges.apiserver import audit, codec, discovery, kubeproto
from arges.apiserver.apply import parse_force
from arges.apiserver.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    RequestTooLarge,
    StatusError,
    Unauthorized,
    UnsupportedMediaType,
)
from arges.apiserver.openapi import OpenAPI
from arges.apiserver.resources import Registry, ResourceType, Version
from arges.apiserver.rest import Rest
from arges.apiserver.rest.options import DeleteOptions, ListOptions, WriteOptions, parse_rv
from arges.apiserver.selectors import parse_field_selector, parse_label_selector
from arges.apiserver.storage import StorageError
from arges.apiserver.store import Entry
from arges.apiserver.tables import build_table
from arges.apiserver.watch import INITIAL_EVENTS_END, WatchEvent, WatchOptions, watch

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3 * 1024 * 1024
"""kube-apiserver's request body limit."""
EXPANDED_BODY_BYTES = 2 * MAX_BODY_BYTES
"""How large (as JSON) a YAML body may grow through its aliases: twice the byte limit, since
JSON spells out what YAML leaves implicit (quotes, braces)."""


LIST_CHUNK = 500
"""Objects per write when a list response is streamed."""
DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
DISCOVERY_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
JSON = "application/json"
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
"""What kube-openapi answers to ``...spec.v2@v1.0+protobuf`` (an '@' is no valid MIME token)."""


@dataclass(frozen=True)
class Negotiated:
    """What the client's Accept header asks for: ``form`` is json, yaml, table, partial or
    discovery; ``media`` the exact media type to answer with."""

    form: str
    media: str
    discovery_version: str = ""


def negotiate(accept: str) -> Negotiated:
    """Pick the first acceptable representation in the client's Accept header.

    Raises:
        NotAcceptable: when nothing offered can be served (e.g. protobuf only).
    """
    for item in (accept or "*/*").split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        params.pop("q", None)
        as_ = params.get("as")
        if media in (JSON, "*/*", "application/*") and not as_:
            return Negotiated("json", JSON)
        if media in ("application/yaml", "application/x-yaml") and not as_:
            return Negotiated("yaml", "application/yaml")
        group = params.get("g") if media == JSON else None
        if group == "meta.k8s.io":
            if as_ == "Table" and params.get("v") in ("v1", "v1beta1"):
                return Negotiated("table", JSON)
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return Negotiated("partial", JSON)
        if (
            group == "apidiscovery.k8s.io"
            and as_ == "APIGroupDiscoveryList"
            and params.get("v") in ("v2", "v2beta1")
        ):
            return Negotiated(
                "discovery",
                DISCOVERY_V2 if params["v"] == "v2" else DISCOVERY_V2BETA1,
                f"apidiscovery.k8s.io/{params['v']}",
            )
    raise NotAcceptable(
        "only the following media types are accepted: application/json, application/yaml, "
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    )


@dataclass(frozen=True)
class Route:
    """A resource request's target, parsed from the URL path."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_route(parts: list[str]) -> Route | None:
    """Parse path segments after ``/api/<v>`` or ``/apis/<g>/<v>`` into a :class:`Route`.

    ``parts`` starts with the group ("" for core) and version. Returns None for paths that
    name no resource (those are discovery).
    """
    group, version, rest = parts[0], parts[1], parts[2:]
    if not rest:
        return None
    namespace = None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise NotFound("the server could not find the requested resource")
    return Route(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource=rest[2] if len(rest) > 2 else None,
    )


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _int(query: Any, key: str) -> int:
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


def _write_options(request: web.Request) -> WriteOptions:
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


class Handler:
    """The aiohttp request handler of the whole API (one catch-all route)."""

    def __init__(
        self,
        rest: Rest,
        registry: Registry,
        *,
        token: str,
        server_address: str,
        version_info: dict[str, str],
        ready: Callable[[], bool],
        bookmark_interval: float = 60.0,
        audit_log: audit.AuditLog | None = None,
    ) -> None:
        self.rest = rest
        self.audit = audit_log
        self.registry = registry
        self.token = token.encode()
        self.server_address = server_address
        self.version_info = version_info
        self.ready = ready
        self.bookmark_interval = bookmark_interval
        self.openapi = OpenAPI(registry, version_info["gitVersion"])
        self.watches: set[asyncio.Task[Any]] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = dt.datetime.now(dt.UTC)
        trail = audit.begin()
        response = await self._answer(request)
        if self.audit is not None:
            self.audit.request(request, trail, response.status, received)
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except StatusError as err:
            return self._status(err)
        except web.HTTPRequestEntityTooLarge:
            return self._status(RequestTooLarge(f"the request body exceeds {MAX_BODY_BYTES} bytes"))
        except StorageError as exc:
            log.error("%s %s: storage failure: %s", request.method, request.path, exc)
            return self._status(InternalError(f"storage failure: {exc}"))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return self._status(InternalError("an internal error occurred; see the server log"))

    def _status(self, err: StatusError) -> web.Response:
        resp = web.Response(status=err.code, body=codec.dumps(err.status()), content_type=JSON)
        for key, value in err.headers.items():
            resp.headers[key] = value
        return resp

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.token
        ):
            raise Unauthorized("Unauthorized")
        audit.current().authenticated = True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            if path == "/readyz" and not self.ready():
                return web.Response(status=503, text="not ready")
            return web.Response(text="ok")
        if path == "/version":
            return self._json(self.version_info)
        self._authenticate(request)
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self._json({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]})
        if parts[0] == "openapi":
            return self._openapi(request, parts[1:])
        if parts[0] == "api":
            if len(parts) == 1:
                return self._discovery(request, core=True)
            route = parse_route(["", *parts[1:]])
        elif parts[0] == "apis":
            if len(parts) == 1:
                return self._discovery(request, core=False)
            if len(parts) == 2:
                doc = discovery.api_group(self.registry, parts[1])
                if doc is None:
                    raise NotFound("the server could not find the requested resource")
                return self._json(doc)
            route = parse_route(parts[1:])
        else:
            raise NotFound("the server could not find the requested resource")
        if route is None:
            group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            doc = discovery.api_resource_list(self.registry, group, version)
            if doc is None:
                raise NotFound("the server could not find the requested resource")
            return self._json(doc)
        return await self._resource(request, route)

    def _json(self, obj: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, body=codec.dumps(obj), content_type=JSON)

    def _discovery(self, request: web.Request, *, core: bool) -> web.Response:
        neg = negotiate(request.headers.get("Accept", ""))
        if neg.form == "discovery":
            doc = discovery.aggregated(self.registry, core=core, api_version=neg.discovery_version)
            resp = web.Response(body=codec.dumps(doc))
            resp.headers["Content-Type"] = neg.media
            return resp
        if core:
            return self._json(discovery.api_versions(self.server_address))
        return self._json(discovery.api_group_list(self.registry))

    def _openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        if parts == ["v2"]:
            as_json, as_proto = self.openapi.v2()
            accept = request.headers.get("Accept", "")
            if "protobuf" in accept and JSON not in accept.split(";")[0]:
                resp = web.Response(body=as_proto)
                resp.headers["Content-Type"] = OPENAPI_V2_PROTOBUF
                return resp
            return web.Response(body=as_json, content_type=JSON)
        if not parts or parts[0] != "v3":
            raise NotFound("the server could not find the requested resource")
        if len(parts) == 1:
            return self._json(self.openapi.root())
        found = self.openapi.document("/".join(parts[1:]))
        if found is None:
            raise NotFound("the server could not find the requested resource")
        doc, digest = found
        resp = web.Response(body=doc, content_type=JSON)
        if request.query.get("hash") == digest:
            resp.headers["Cache-Control"] = "public, immutable"
        else:
            resp.headers["Cache-Control"] = "no-cache, private"
        resp.headers["Etag"] = f'"{digest}"'
        return resp

    # Resources.

    def _lookup(self, route: Route) -> tuple[ResourceType, Version]:
        found = self.registry.lookup(route.group, route.version, route.plural)
        if found is None:
            raise NotFound("the server could not find the requested resource")
        rt, version = found
        if route.namespace is not None and not rt.namespaced:
            raise NotFound("the server could not find the requested resource")
        if route.subresource not in (None, "status") or (
            route.subresource == "status" and not version.status
        ):
            raise NotFound("the server could not find the requested resource")
        return rt, version

    async def _resource(self, request: web.Request, route: Route) -> web.StreamResponse:
        audit.current().ref = audit.ObjectRef(
            route.plural, route.namespace, route.name, route.group, route.version, route.subresource
        )
        rt, version = self._lookup(route)
        method = request.method
        query = request.query
        if route.name is None:
            if rt.namespaced and route.namespace is None and method != "GET":
                raise MethodNotAllowed(
                    f"{method} is not allowed on {rt.plural} across all namespaces; use "
                    f".../namespaces/<namespace>/{rt.plural}"
                )
            if method == "GET":
                opts = self._list_options(query, rt, version)
                if _bool(query.get("watch")):
                    return await self._watch(request, rt, version, route.namespace, opts)
                return await self._list(request, rt, version, route.namespace, opts)
            if method == "POST":
                wopts = _write_options(request)
                body = await self._body(request, rt)
                obj = await self.rest.create(rt, version, route.namespace or "", body, wopts)
                audit.current().created = obj["metadata"].get("name")
                return self._object(request, rt, version, obj, wopts.warnings, 201)
            if method == "DELETE":
                dopts = await self._delete_options(request)
                list_opts = self._list_options(query, rt, version)
                items = await self.rest.delete_collection(
                    rt, version, route.namespace, list_opts, dopts
                )
                resp = self._json(
                    {
                        "kind": rt.list_kind_name,
                        "apiVersion": rt.api_version(version.name),
                        "metadata": {"resourceVersion": str(self.rest.store.rv)},
                        "items": items,
                    }
                )
                self._warned(resp, dopts.warnings)
                return resp
            raise MethodNotAllowed(f"{method} is not supported on a collection")
        if rt.namespaced and route.namespace is None:
            raise NotFound("the server could not find the requested resource")
        namespace = route.namespace or ""
        name = route.name
        if method == "GET":
            entry = await self.rest.read(rt, version, namespace, name)
            return self._entry(request, rt, version, entry)
        if method == "PUT":
            wopts = _write_options(request)
            body = await self._body(request, rt)
            obj = await self.rest.update(
                rt, version, namespace, name, body, wopts, subresource=route.subresource
            )
            return self._object(request, rt, version, obj, wopts.warnings, 200)
        if method == "PATCH":
            wopts = _write_options(request)
            content_type = request.content_type
            raw = await request.read()
            patch = codec.decode_body(
                raw,
                "application/yaml" if "yaml" in content_type else JSON,
                kind=rt.kind,
                expanded_limit=EXPANDED_BODY_BYTES,
            )
            obj = await self.rest.patch(
                rt,
                version,
                namespace,
                name,
                content_type,
                patch,
                wopts,
                subresource=route.subresource,
            )
            status = 201 if wopts.created else 200
            return self._object(request, rt, version, obj, wopts.warnings, status)
        if method == "DELETE" and route.subresource is None:
            dopts = await self._delete_options(request)
            obj, gone = await self.rest.delete(rt, version, namespace, name, dopts)
            if gone and not rt.strategy.return_deleted_object:
                resp = self._json(deleted_status(rt, name, obj["metadata"].get("uid", "")))
                self._warned(resp, dopts.warnings)
                return resp
            return self._object(request, rt, version, obj, dopts.warnings, 200)
        raise MethodNotAllowed(f"{method} is not supported here")

    async def _body(self, request: web.Request, rt: ResourceType) -> Any:
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

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
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
            orphan = _bool(query.get("orphanDependents"))
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan else "Background"
        pre = body.get("preconditions") or {}
        return DeleteOptions(
            propagation=policy,
            uid=pre.get("uid"),
            resource_version=pre.get("resourceVersion"),
            dry_run=bool(dry_run),
        )

    def _list_options(self, query: Any, rt: ResourceType, version: Version) -> ListOptions:
        return ListOptions(
            labels=parse_label_selector(query.get("labelSelector")),
            fields=parse_field_selector(query.get("fieldSelector"), rt.field_labels(version)),
            limit=_int(query, "limit"),
            continue_token=query.get("continue", ""),
            resource_version=query.get("resourceVersion", ""),
            resource_version_match=query.get("resourceVersionMatch", ""),
        )

    def _warned(self, resp: web.StreamResponse, warnings: list[str]) -> None:
        for text in dict.fromkeys(warnings):
            resp.headers.add("Warning", _warning(text))

    def _entry(
        self, request: web.Request, rt: ResourceType, version: Version, entry: Entry
    ) -> web.Response:
        neg = negotiate(request.headers.get("Accept", ""))
        if neg.form == "json":
            return web.Response(body=self.rest.render(entry, rt, version), content_type=JSON)
        return self._object(request, rt, version, self.rest.view(entry, rt, version), [], 200)

    def _object(
        self,
        request: web.Request,
        rt: ResourceType,
        version: Version,
        obj: dict[str, Any],
        warnings: list[str],
        status: int,
    ) -> web.Response:
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
            resp = web.Response(status=status, body=codec.dumps(out), content_type=JSON)
        self._warned(resp, warnings)
        return resp

    async def _list(
        self,
        request: web.Request,
        rt: ResourceType,
        version: Version,
        namespace: str | None,
        opts: ListOptions,
    ) -> web.StreamResponse:
        neg = negotiate(request.headers.get("Accept", ""))
        result = await self.rest.list_objects(rt, version, namespace, opts)
        meta: dict[str, Any] = {"resourceVersion": str(result.rv)}
        if result.continue_token:
            meta["continue"] = result.continue_token
            meta["remainingItemCount"] = result.remaining
        if neg.form == "table":
            table = build_table(
                version,
                (self.rest.view(e, rt, version) for e in result.entries),
                include_object=request.query.get("includeObject", "Metadata"),
                resource_version=str(result.rv),
                continue_token=result.continue_token,
                remaining=result.remaining,
            )
            return self._json(table)
        if neg.form == "partial":
            return self._json(
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
            body = head + b",".join(self.rest.render(e, rt, version) for e in result.entries)
            return web.Response(
                text=yaml.safe_dump(codec.loads(body + b"]}"), sort_keys=False),
                content_type="application/yaml",
            )
        if len(result.entries) <= LIST_CHUNK:
            items = b",".join(self.rest.render(e, rt, version) for e in result.entries)
            return web.Response(body=head + items + b"]}", content_type=JSON)
        # Large lists go out in chunks, each written when the client has taken the last, so a
        # full list of 10,000 objects never holds a second copy of itself in memory.
        resp = web.StreamResponse(headers={"Content-Type": JSON})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(head)
        entries = result.entries
        for start in range(0, len(entries), LIST_CHUNK):
            chunk = b",".join(
                self.rest.render(e, rt, version) for e in entries[start : start + LIST_CHUNK]
            )
            await resp.write(chunk if start == 0 else b"," + chunk)
        await resp.write(b"]}")
        await resp.write_eof()
        return resp

    async def _watch(
        self,
        request: web.Request,
        rt: ResourceType,
        version: Version,
        namespace: str | None,
        opts: ListOptions,
    ) -> web.StreamResponse:
        neg = negotiate(request.headers.get("Accept", ""))
        query = request.query
        timeout = float(_int(query, "timeoutSeconds") or 1800)
        send_initial = _bool(query.get("sendInitialEvents"))
        if send_initial and opts.resource_version_match != "NotOlderThan":
            raise BadRequest(
                "sendInitialEvents: Forbidden: sendInitialEvents requires setting "
                "resourceVersionMatch to NotOlderThan"
            )
        wopts = WatchOptions(
            bookmarks=_bool(query.get("allowWatchBookmarks")),
            send_initial_events=send_initial,
            timeout=timeout,
            bookmark_interval=self.bookmark_interval,
        )
        if not send_initial and opts.resource_version not in ("", "0"):
            parse_rv(opts.resource_version)
        include = query.get("includeObject", "Metadata")
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"},
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self.watches.add(task)
        stream = watch(self.rest, rt, version, namespace, opts, wopts)
        try:
            async for batch in stream:
                await resp.write(
                    b"".join(self._encode_event(ev, rt, version, neg.form, include) for ev in batch)
                )
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            await stream.aclose()
            if task is not None:
                self.watches.discard(task)
        return resp

    def _encode_event(
        self, ev: WatchEvent, rt: ResourceType, version: Version, form: str, include: str
    ) -> bytes:
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
            raw = self.rest.render(ev.entry, rt, version)
            return b'{"type":"' + ev.type.encode() + b'","object":' + raw + b"}\n"
        view = self.rest.view(ev.entry, rt, version)
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
