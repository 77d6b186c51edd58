"""What the API port serves besides the Kubernetes API, and its request metrics.

One aiohttp middleware in front of :class:`~arges.apiserver.http.handler.Handler`:

- paths mounted by the plane (``/metrics``, the dashboard under ``/ui``) go to their own
  handlers, which do their own authentication;
- every other request is counted in ``arges_apiserver_requests_total`` by verb (as
  kube-apiserver names them: get, list, watch, create, update, patch, apply, delete,
  deletecollection), resource and code, and timed in
  ``arges_apiserver_request_duration_seconds``; open watches are counted in
  ``arges_apiserver_watches``. A resource the server does not serve is labelled ``unknown``
  and paths that name none (discovery, OpenAPI, health) by their first segment, so request
  input never grows the label set.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter, Histogram

from arges.apiserver.http.incoming import Incoming
from arges.apiserver.resources import Registry
from arges.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NON_RESOURCE = frozenset({"api", "apis", "openapi", "version", "healthz", "livez", "readyz"})


def classify(
    method: str, path: str, query: Mapping[str, str], registry: Registry
) -> tuple[str, str, str]:
    """(verb, group, resource) of a request, for metric labels."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        first = parts[0] if parts and parts[0] in NON_RESOURCE else "other"
        return method.lower(), "", first if parts else "root"
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2:] not in (["status"], ["finalize"]):
        rest = rest[2:]
    plural, named = rest[0], len(rest) > 1
    resource = plural if registry.get(group, plural) is not None else "unknown"
    if resource == "unknown":
        group = ""
    verb = {
        "GET": "get" if named else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }.get(method, method.lower())
    if verb == "list" and query.get("watch", "").lower() in ("true", "1"):
        verb = "watch"
    return verb, group, resource


class Instrument:
    """Counts and times API requests (see the module docstring)."""

    def __init__(self, metrics: Metrics, registry: Registry) -> None:
        self.metrics = metrics
        self.registry = registry
        # Each request's series, by their labels (bounded by classify): a dict lookup where
        # the client library checks and locks its own on every call.
        self._timers: dict[tuple[str, str, str], Histogram] = {}
        self._counters: dict[tuple[str, str, str, int], Counter] = {}

    async def observe(
        self, request: Incoming, answer: Callable[[], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """``answer()``'s response to ``request``, counted and timed."""
        metrics = self.metrics
        verb, group, resource = classify(request.method, request.path, request.query, self.registry)
        if request.content_type == "application/apply-patch+yaml" and verb == "patch":
            verb = "apply"
        started = time.monotonic()
        watches = metrics.api_watches.labels(group, resource) if verb == "watch" else None
        if watches is not None:
            watches.inc()
        code = 500
        try:
            response = await answer()
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            if watches is not None:
                watches.dec()
            else:
                series = (verb, group, resource)
                timer = self._timers.get(series)
                if timer is None:
                    timer = self._timers[series] = metrics.api_latency.labels(*series)
                timer.observe(time.monotonic() - started)
            counted = (verb, group, resource, code)
            counter = self._counters.get(counted)
            if counter is None:
                counter = self._counters[counted] = metrics.api_requests.labels(
                    verb, group, resource, str(code)
                )
            counter.inc()


def middleware(instrument: Instrument, mounts: Mapping[str, Handler]) -> Middleware:
    """The middleware (see the module docstring); ``mounts`` maps a path prefix to its
    handler and may change while the server runs."""

    @web.middleware
    async def instrumented(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        for prefix, mounted in mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                return await mounted(request)
        return await instrument.observe(request, lambda: handler(request))

    return instrumented
