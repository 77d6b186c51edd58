"""The dashboard: HTML pages of the fleet under ``/ui`` on the API port, updated live.

Pages are rendered on the server (Jinja2, autoescaped) from in-memory mirrors of the API
(:mod:`arges.kube.informer`), so they cost no API call and stay fast with many servers. A page
opens ``/ui/stream`` (server-sent events); whenever a watched object changes the stream says
so, and the page's script fetches the page again as a fragment and swaps it in. Nothing is
fetched from anywhere but this server: the script and the style sheet are served from the
package, and the Content-Security-Policy allows nothing else.

Routes (all but the sign-in page, the static files and the stream need a session):

====================================  =================================================
``GET /ui``                           overview: counts by state, clusters, Events, boots
``GET /ui/servers``                   the servers, filterable by state, class and labels
``GET /ui/servers/NAME``              one server: inventory, BMC, conditions, boots, Events
``GET /ui/servers/NAME/console``      its serial console log (in the lab)
``POST /ui/servers/NAME/ACTION``      accept, cordon, uncordon, power-cycle, reinspect:
                                      a confirmation page, then (confirmed) the change
``GET /ui/clusters``                  TalosClusters, their members and progress
``GET /ui/environments``              Environments, their assets and checksums
``GET|POST /ui/login``, ``POST /ui/logout``
====================================  =================================================

Bad input (an unknown server, action or filter) gets a page that says what was wrong, never
a traceback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.errors import KubeError, NotFound
from arges.kube.informer import Informers, key_of
from arges.kube.resources import (
    ENVIRONMENTS,
    EVENTS,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
    TALOS_CLUSTERS,
    Resource,
)
from arges.metal.requests import POWER_CYCLE_REQUESTED, REINSPECT_REQUESTED, stamp
from arges.metrics import Metrics
from arges.selectors import SelectorError, parse_label_selector
from arges.ui import views
from arges.ui.auth import COOKIE, Session, Sessions

log = logging.getLogger(__name__)

PREFIX = "/ui"
FRAGMENT = "X-Arges-Fragment"
MAX_STREAMS = 64
KEEPALIVE = 15.0
DEBOUNCE = 0.2
MAX_EVENTS = 2000
CONSOLE_TAIL = 256 * 1024
STATIC = {"app.css": "text/css", "app.js": "text/javascript"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors "
    "'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
UUID_LIKE = re.compile(r"^[0-9a-z][0-9a-z.-]{0,252}$")
SESSION = web.RequestKey("session", Session)


@dataclass(frozen=True)
class Action:
    """A change a person can make from a server's page."""

    title: str
    explain: str
    done: str


ACTIONS = {
    "accept": Action(
        "Accept",
        "Arges will manage this server: its disks are wiped, then it is powered off until "
        "a cluster needs it. Nothing destructive happens to a server before it is accepted.",
        "Accepted: the server will be wiped and made available.",
    ),
    "cordon": Action(
        "Cordon",
        "The server will not be allocated to any cluster. What runs on it now is left alone.",
        "Cordoned: the server will not be allocated.",
    ),
    "uncordon": Action(
        "Uncordon",
        "The server can be allocated again.",
        "Uncordoned: the server can be allocated.",
    ),
    "power-cycle": Action(
        "Power cycle",
        "Its BMC turns the server off and on again: whatever runs on it stops at once. It then "
        "network-boots what Arges decides (the agent, its target, or its disk).",
        "Power cycle requested: the power controller carries it out shortly.",
    ),
    "reinspect": Action(
        "Re-inspect",
        "The server reboots into the discovery agent, which reads its hardware inventory "
        "again; a clean server is powered off afterwards.",
        "Re-inspection requested: the server reboots into the agent.",
    ),
}


class Problem(ArgesError):
    """A request the dashboard refuses, with the HTTP status and what to tell the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Dashboard:
    """The dashboard (see the module docstring); mounted at ``/ui`` by the plane."""

    def __init__(
        self,
        kube: KubeClient,
        metrics: Metrics,
        *,
        admin_token: str,
        pki_dir: Path,
        console_log: Callable[[str], Path | None] | None = None,
    ) -> None:
        """``console_log`` names a server's serial console log, where there is one (the
        lab's servers have them)."""
        self.kube = kube
        self.metrics = metrics
        self.sessions = Sessions(admin_token, pki_dir)
        self.console_log = console_log or (lambda _name: None)
        self.informers = Informers(
            kube.connection,
            [SERVERS, SERVER_CLASSES, SERVER_BINDINGS, ENVIRONMENTS, TALOS_CLUSTERS, EVENTS],
            component="arges-dashboard",
            changed=self._changed,
            keep={EVENTS.plural: lambda objs: views.newest_events(objs, MAX_EVENTS)},
            # A kind no longer served is shown empty, not as it last was.
            forget_unserved=True,
        )
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("arges.ui", "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.version = 0
        self._wake = asyncio.Event()
        self._streams = 0
        self._closing = False

    async def start(self) -> None:
        """Start mirroring the API (returns at once; pages fill in as the lists arrive)."""
        self.informers.start()

    async def stop(self) -> None:
        """End the live streams and the watches."""
        self._closing = True
        self._wake.set()
        await self.informers.stop()

    def _changed(self, resource: Resource) -> None:
        self.version += 1
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    # Requests.

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request under ``/ui``."""
        try:
            response = await self._route(request)
        except Problem as exc:
            response = self._page(
                request, "error.html", {"status": exc.status, "message": exc.message}, exc.status
            )
        except KubeError as exc:
            log.warning("dashboard: %s %s: %s", request.method, request.path, exc)
            response = self._page(
                request,
                "error.html",
                {"status": 503, "message": f"Arges could not reach its API: {exc}"},
                503,
            )
        except (web.HTTPException, ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("dashboard: %s %s failed", request.method, request.path)
            response = web.Response(
                status=500, text="The dashboard failed on this page; the server log says why.\n"
            )
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path[len(PREFIX) :].split("/") if p]
        method = request.method
        if parts[:1] == ["static"] and len(parts) == 2 and method == "GET":
            return self._static(parts[1])
        if parts == ["login"]:
            if method == "POST":
                return await self._sign_in(request)
            return self._login(request, request.query.get("next"))
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            if request.headers.get(FRAGMENT) or parts == ["stream"]:
                raise Problem(401, "Your session has ended: sign in again.")
            if method != "GET":
                raise Problem(401, "Sign in first.")
            target = quote(request.path_qs, safe="/?=&")
            raise web.HTTPSeeOther(f"{PREFIX}/login?{urlencode({'next': target})}")
        request[SESSION] = session
        if method == "POST":
            return await self._post(request, session, parts)
        if method != "GET":
            raise Problem(405, f"{method} is not used here.")
        if not parts:
            return self._overview(request)
        if parts == ["stream"]:
            return await self._stream(request)
        if parts == ["servers"]:
            return self._servers(request)
        if parts[0] == "servers" and len(parts) == 2:
            return self._server(request, parts[1])
        if parts[0] == "servers" and len(parts) == 3 and parts[2] == "console":
            return await self._console(parts[1])
        if parts == ["clusters"]:
            return self._clusters(request)
        if parts == ["environments"]:
            return self._environments(request)
        raise Problem(404, f"There is no page {request.path}.")

    async def _post(
        self, request: web.Request, session: Session, parts: list[str]
    ) -> web.StreamResponse:
        form = await request.post()
        if not self.sessions.form_ok(session, str(form.get("csrf", ""))):
            raise Problem(403, "This form has expired: reload the page and try again.")
        if parts == ["logout"]:
            self.sessions.sign_out(request.cookies.get(COOKIE))
            response = web.HTTPSeeOther(f"{PREFIX}/login")
            response.del_cookie(COOKIE, path=PREFIX)
            raise response
        if len(parts) == 3 and parts[0] == "servers":
            return await self._action(request, session, parts[1], parts[2], form.get("confirmed"))
        raise Problem(404, f"There is nothing to post to at {request.path}.")

    # Sign-in.

    def _login(self, request: web.Request, after: str | None, failed: bool = False) -> web.Response:
        return self._page(
            request, "login.html", {"next": _next(after), "failed": failed}, 401 if failed else 200
        )

    async def _sign_in(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        signed = self.sessions.sign_in(str(form.get("token", "")))
        if signed is None:
            await asyncio.sleep(0.5)  # guessing tokens costs time
            return self._login(request, str(form.get("next", "")), failed=True)
        sid, _ = signed
        response = web.HTTPSeeOther(_next(str(form.get("next", ""))))
        response.set_cookie(COOKIE, sid, path=PREFIX, httponly=True, secure=True, samesite="Strict")
        raise response

    # Pages.

    def _overview(self, request: web.Request) -> web.Response:
        servers = self.informers.objects(SERVERS)
        clusters = self.informers.objects(TALOS_CLUSTERS)
        return self._page(
            request,
            "overview.html",
            {
                "counts": views.state_counts(servers),
                "total": len(servers),
                "phases": views.phases(clusters),
                "events": views.events(self.informers.objects(EVENTS), limit=15),
                "boots": views.boot_rows(self.metrics.boots.recent(15)),
            },
        )

    def _rows(self) -> list[views.ServerRow]:
        classes = views.memberships(self.informers.objects(SERVER_CLASSES))
        rows = [
            views.server_row(
                body,
                self.informers.get(SERVER_BINDINGS, name := str(body["metadata"]["name"])),
                classes.get(name, []),
                self.metrics.boots,
            )
            for body in self.informers.objects(SERVERS)
        ]
        return sorted(rows, key=lambda r: (r.hostname or "~", r.name))

    def _servers(self, request: web.Request) -> web.Response:
        state = request.query.get("state", "")
        server_class = request.query.get("class", "")
        label = request.query.get("label", "")
        problem = ""
        if state and state not in views.STATE_FILTERS:
            problem = f"unknown state {state!r}"
            state = ""
        try:
            selector = parse_label_selector(label)
        except SelectorError as exc:
            problem = f"label selector: {exc.message}"
            selector = parse_label_selector("")
        rows = self._rows()
        shown = [r for r in rows if views.matches(r, state, server_class, selector)]
        classes = sorted(str(c["metadata"]["name"]) for c in self.informers.objects(SERVER_CLASSES))
        return self._page(
            request,
            "servers.html",
            {
                "rows": shown,
                "total": len(rows),
                "states": views.STATE_FILTERS,
                "classes": classes,
                "state": state,
                "server_class": server_class,
                "label": label,
                "problem": problem,
            },
        )

    def _server(self, request: web.Request, name: str) -> web.Response:
        body = self.informers.get(SERVERS, name)
        if body is None:
            raise Problem(404, f"There is no server {name}.")
        binding = self.informers.get(SERVER_BINDINGS, name)
        classes = views.memberships(self.informers.objects(SERVER_CLASSES)).get(name, [])
        row = views.server_row(body, binding, classes, self.metrics.boots)
        status = body.get("status") or {}
        done = ACTIONS.get(request.query.get("done", ""))
        return self._page(
            request,
            "server.html",
            {
                "row": row,
                "hardware": status.get("hardware") or {},
                "addresses": [a.get("address", "") for a in status.get("addresses") or []],
                "last_seen": str(status.get("lastSeen") or ""),
                "bmc": views.bmc(body),
                "power_management": views.condition(body, "PowerManagement"),
                "conditions": views.conditions(body),
                "boots": views.boot_rows(self.metrics.boots.of(name)),
                "pxe": views.condition(body, "PXEBooted"),
                "events": views.events(
                    self.informers.objects(EVENTS), kind="Server", name=name, limit=30
                ),
                "actions": self._available(row),
                "console": self.console_log(name) is not None,
                "done": done.done if done is not None else "",
            },
        )

    def _clusters(self, request: web.Request) -> web.Response:
        clusters = []
        for body in sorted(self.informers.objects(TALOS_CLUSTERS), key=key_of):
            meta = body.get("metadata") or {}
            status = body.get("status") or {}
            rows, ready, desired = views.members(body)
            clusters.append(
                {
                    "name": meta.get("name"),
                    "namespace": meta.get("namespace"),
                    "phase": status.get("phase") or "Pending",
                    "endpoint": (body.get("spec") or {}).get("endpoint", ""),
                    "control_planes": status.get("controlPlanes") or "",
                    "workers": status.get("workerCount") or "",
                    "versions": views.versions(body),
                    "members": rows,
                    "ready": ready,
                    "desired": desired,
                    "conditions": views.conditions(body),
                    "events": views.events(
                        self.informers.objects(EVENTS),
                        kind="TalosCluster",
                        name=str(meta.get("name")),
                        limit=5,
                    ),
                }
            )
        return self._page(request, "clusters.html", {"clusters": clusters})

    def _environments(self, request: web.Request) -> web.Response:
        envs = [
            views.environment(body)
            for body in sorted(self.informers.objects(ENVIRONMENTS), key=key_of)
        ]
        return self._page(request, "environments.html", {"environments": envs})

    async def _console(self, name: str) -> web.Response:
        path = self.console_log(name) if UUID_LIKE.match(name) else None
        if path is None:
            raise Problem(404, f"Server {name} has no console log here (only lab servers do).")
        try:
            data = await asyncio.to_thread(_tail, path, CONSOLE_TAIL)
        except OSError as exc:
            raise Problem(404, f"The console log of {name} cannot be read: {exc.strerror}") from exc
        return web.Response(body=data, content_type="text/plain", charset="utf-8")

    # Actions.

    def _available(self, row: views.ServerRow) -> list[str]:
        """The actions that make sense for a server now."""
        out = []
        if not row.accepted:
            out.append("accept")
        out.append("uncordon" if row.cordoned else "cordon")
        if row.accepted and row.has_bmc:
            out.append("power-cycle")
            if not row.allocated:
                out.append("reinspect")
        return out

    async def _action(
        self,
        request: web.Request,
        session: Session,
        name: str,
        action: str,
        confirmed: Any,
    ) -> web.StreamResponse:
        body = self.informers.get(SERVERS, name)
        if body is None:
            raise Problem(404, f"There is no server {name}.")
        what = ACTIONS.get(action)
        if what is None:
            raise Problem(404, f"There is no action {action!r}; there are {', '.join(ACTIONS)}.")
        if session.role != "admin":
            raise Problem(403, "You signed in with the read-only token: sign in as admin to act.")
        row = views.server_row(
            body, self.informers.get(SERVER_BINDINGS, name), [], self.metrics.boots
        )
        if action not in self._available(row):
            raise Problem(409, f"{what.title} does not apply to server {name} now.")
        if confirmed != "yes":
            return self._page(request, "confirm.html", {"row": row, "action": action, "what": what})
        try:
            await self.kube.patch(SERVERS, name, _change(action))
        except NotFound as exc:
            raise Problem(404, f"There is no server {name}.") from exc
        log.info("dashboard: %s on server %s", action, name)
        raise web.HTTPSeeOther(f"{PREFIX}/servers/{quote(name)}?done={action}")

    # Rendering.

    def _page(
        self, request: web.Request, template: str, context: dict[str, Any], status: int = 200
    ) -> web.Response:
        session = request.get(SESSION)
        html = self.templates.get_template(template).render(
            session=session,
            prefix=PREFIX,
            path=request.path,
            fragment=bool(request.headers.get(FRAGMENT)),
            version=self.version,
            **context,
        )
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def _static(self, name: str) -> web.Response:
        media = STATIC.get(name)
        if media is None:
            raise Problem(404, f"There is no file {name}.")
        data = resources.files("arges.ui").joinpath("static", name).read_bytes()
        response = web.Response(body=data, content_type=media)
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if self._streams >= MAX_STREAMS:
            raise Problem(503, "Too many live pages are open; close some.")
        response = web.StreamResponse(
            headers={**HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        self._streams += 1
        try:
            await response.prepare(request)
            await response.write(f"retry: 2000\nevent: hello\ndata: {self.version}\n\n".encode())
            # What changed between the page's rendering and this stream is news too.
            seen = _int(request.query.get("since"), self.version)
            if seen != self.version:
                seen = self.version
                await response.write(f"event: change\ndata: {seen}\n\n".encode())
            while not self._closing:
                wake = self._wake
                try:
                    async with asyncio.timeout(KEEPALIVE):
                        await wake.wait()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await asyncio.sleep(DEBOUNCE)  # a burst of changes is one refresh
                if self.version != seen and not self._closing:
                    seen = self.version
                    await response.write(f"event: change\ndata: {seen}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams -= 1
        return response


def _change(action: str) -> dict[str, Any]:
    """The merge patch of a Server that carries out ``action``."""
    now = stamp(dt.datetime.now(dt.UTC))
    changes: dict[str, dict[str, Any]] = {
        "accept": {"spec": {"accepted": True}},
        "cordon": {"spec": {"cordoned": True}},
        "uncordon": {"spec": {"cordoned": False}},
        "power-cycle": {"metadata": {"annotations": {POWER_CYCLE_REQUESTED: now}}},
        "reinspect": {"metadata": {"annotations": {REINSPECT_REQUESTED: now}}},
    }
    return changes[action]


def _int(value: str | None, default: int) -> int:
    try:
        return int(value or "")
    except ValueError:
        return default


def _next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path, never elsewhere."""
    if value and value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX


def _tail(path: Path, size: int) -> bytes:
    with path.open("rb") as log_file:
        log_file.seek(0, 2)
        end = log_file.tell()
        log_file.seek(max(0, end - size))
        return log_file.read()
