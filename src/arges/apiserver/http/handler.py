"""The API server's request handler: dispatch, authentication and error translation.

Paths follow the Kubernetes API layout::

    /api/v1[/namespaces/{ns}]/{plural}[/{name}[/status]]
    /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/status]]

plus discovery (``/api``, ``/apis``, ...), ``/openapi/v3``, ``/version`` and the health
endpoints (``/healthz``, ``/livez``, ``/readyz``, which need no token, as in kube-apiserver).
Every other request needs ``Authorization: Bearer <token>``, else 401.

Resource requests are parsed by :mod:`~arges.apiserver.http.routing`, their parameters by
:mod:`~arges.apiserver.http.params`, and answered by :mod:`~arges.apiserver.http.responses`
(JSON, YAML, tables or metadata only) and :mod:`~arges.apiserver.http.watching`. Every
:class:`~arges.apiserver.errors.StatusError` raised below is turned into its ``Status`` body
here, and nowhere else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from arges.apiserver import audit, codec, discovery
from arges.apiserver.errors import (
    InternalError,
    MethodNotAllowed,
    NotFound,
    RequestTooLarge,
    StatusError,
    Unauthorized,
)
from arges.apiserver.http.incoming import Incoming
from arges.apiserver.http.negotiation import JSON, OPENAPI_V2_PROTOBUF, negotiate
from arges.apiserver.http.params import (
    MAX_BODY_BYTES,
    decode,
    delete_options,
    flag,
    list_options,
    read_body,
    write_options,
)
from arges.apiserver.http.responses import (
    SLICED_BYTES,
    deleted_status,
    entry_response,
    json_response,
    list_response,
    object_response,
    sent_in_slices,
    status_response,
    warned,
)
from arges.apiserver.http.routing import Route, lookup, parse_route
from arges.apiserver.http.watching import serve_watch
from arges.apiserver.openapi import OpenAPI
from arges.apiserver.resources import Registry
from arges.apiserver.rest import Rest
from arges.apiserver.storage import StorageError

log = logging.getLogger(__name__)


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
        """An aiohttp application that sends every path to :meth:`handle` (bodies up to
        :data:`MAX_BODY_BYTES`)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The answer to an HTTP request; a large body is sent in slices."""
        response = await self.respond(request)
        if (
            type(response) is web.Response
            and isinstance(response.body, bytes)
            and len(response.body) > SLICED_BYTES
        ):
            return await sent_in_slices(request, response)
        return response

    async def respond(self, request: Incoming) -> web.StreamResponse:
        """The answer to ``request`` (every error as its ``Status``), audited; a local
        request's answer is whole (see :mod:`~arges.apiserver.http.incoming`)."""
        received = dt.datetime.now(dt.UTC)
        trail = audit.begin()
        response = await self._answer(request)
        if self.audit is not None:
            self.audit.request(request, trail, response.status, received)
        return response

    async def _answer(self, request: Incoming) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except StatusError as err:
            return status_response(err)
        except web.HTTPRequestEntityTooLarge:
            return status_response(
                RequestTooLarge(f"the request body exceeds {MAX_BODY_BYTES} bytes")
            )
        except StorageError as exc:
            log.error("%s %s: storage failure: %s", request.method, request.path, exc)
            return status_response(InternalError(f"storage failure: {exc}"))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return status_response(InternalError("an internal error occurred; see the server log"))

    def _authenticate(self, request: Incoming) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.token
        ):
            raise Unauthorized("Unauthorized")
        audit.current().authenticated = True

    async def _handle(self, request: Incoming) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            if path == "/readyz" and not self.ready():
                return web.Response(status=503, text="not ready")
            return web.Response(text="ok")
        if path == "/version":
            return json_response(self.version_info)
        self._authenticate(request)
        parts = [p for p in path.split("/") if p]
        if not parts:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]})
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
                return json_response(doc)
            route = parse_route(parts[1:])
        else:
            raise NotFound("the server could not find the requested resource")
        if route is None:
            group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            doc = discovery.api_resource_list(self.registry, group, version)
            if doc is None:
                raise NotFound("the server could not find the requested resource")
            return json_response(doc)
        return await self._resource(request, route)

    def _discovery(self, request: Incoming, *, core: bool) -> web.Response:
        neg = negotiate(request.headers.get("Accept", ""))
        if neg.form == "discovery":
            doc = discovery.aggregated(self.registry, core=core, api_version=neg.discovery_version)
            resp = web.Response(body=codec.dumps(doc))
            resp.headers["Content-Type"] = neg.media
            return resp
        if core:
            return json_response(discovery.api_versions(self.server_address))
        return json_response(discovery.api_group_list(self.registry))

    def _openapi(self, request: Incoming, parts: list[str]) -> web.Response:
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
            return json_response(self.openapi.root())
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

    async def _resource(self, request: Incoming, route: Route) -> web.StreamResponse:
        audit.current().ref = audit.ObjectRef(
            route.plural, route.namespace, route.name, route.group, route.version, route.subresource
        )
        rt, version = lookup(self.registry, route)
        method = request.method
        query = request.query
        if route.name is None:
            if rt.namespaced and route.namespace is None and method != "GET":
                raise MethodNotAllowed(
                    f"{method} is not allowed on {rt.plural} across all namespaces; use "
                    f".../namespaces/<namespace>/{rt.plural}"
                )
            if method == "GET":
                opts = list_options(query, rt, version)
                if flag(query.get("watch")):
                    return await serve_watch(
                        request,
                        self.rest,
                        rt,
                        version,
                        route.namespace,
                        opts,
                        bookmark_interval=self.bookmark_interval,
                        watches=self.watches,
                    )
                return await list_response(request, self.rest, rt, version, route.namespace, opts)
            if method == "POST":
                wopts = write_options(request)
                body = await read_body(request, rt)
                obj = await self.rest.create(rt, version, route.namespace or "", body, wopts)
                audit.current().created = obj["metadata"].get("name")
                return await object_response(request, rt, version, obj, wopts.warnings, 201)
            if method == "DELETE":
                dopts = await delete_options(request)
                list_opts = list_options(query, rt, version)
                items = await self.rest.delete_collection(
                    rt, version, route.namespace, list_opts, dopts
                )
                resp = json_response(
                    {
                        "kind": rt.list_kind_name,
                        "apiVersion": rt.api_version(version.name),
                        "metadata": {"resourceVersion": str(self.rest.store.rv)},
                        "items": items,
                    }
                )
                warned(resp, dopts.warnings)
                return resp
            raise MethodNotAllowed(f"{method} is not supported on a collection")
        if rt.namespaced and route.namespace is None:
            raise NotFound("the server could not find the requested resource")
        namespace = route.namespace or ""
        name = route.name
        if method == "GET":
            entry = await self.rest.read(rt, version, namespace, name)
            return await entry_response(request, self.rest, rt, version, entry)
        if method == "PUT":
            wopts = write_options(request)
            body = await read_body(request, rt)
            obj = await self.rest.update(
                rt, version, namespace, name, body, wopts, subresource=route.subresource
            )
            return await object_response(request, rt, version, obj, wopts.warnings, 200)
        if method == "PATCH":
            wopts = write_options(request)
            content_type = request.content_type
            patch = await decode(
                await request.read(),
                "application/yaml" if "yaml" in content_type else JSON,
                kind=rt.kind,
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
            return await object_response(request, rt, version, obj, wopts.warnings, status)
        if method == "DELETE" and route.subresource is None:
            dopts = await delete_options(request)
            obj, gone = await self.rest.delete(rt, version, namespace, name, dopts)
            if gone and not rt.strategy.return_deleted_object:
                resp = json_response(deleted_status(rt, name, obj["metadata"].get("uid", "")))
                warned(resp, dopts.warnings)
                return resp
            return await object_response(request, rt, version, obj, dopts.warnings, 200)
        raise MethodNotAllowed(f"{method} is not supported here")
