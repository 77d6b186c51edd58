"""The embedded API server, wired together: store, registry, REST, controllers, HTTPS.

    server = ApiServer(ApiServerConfig(data_dir=Path(".arges")))
    await server.start()       # serving; DIR/kubeconfig works with kubectl
    ...
    await server.stop()        # ends watches, finishes writes, closes the database

On start it creates or loads its credentials and the key Secrets are encrypted with at rest
(:mod:`arges.apiserver.encryption`), opens ``DIR/state.db`` and the audit log of writes
(:mod:`arges.apiserver.audit`), serves the resources of
the CRDs already stored, makes sure the standard namespaces exist, installs the CRDs it was
given (created, or updated when they differ, exactly as ``kubectl apply`` would), and only
then answers ``/readyz`` with ``ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from arges import __version__
from arges.apiserver import crd, instrument
from arges.apiserver.admissionregistration import webhook_configuration_types
from arges.apiserver.audit import AuditLog
from arges.apiserver.builtin import builtin_types
from arges.apiserver.encryption import EncryptionError, ensure_config
from arges.apiserver.errors import AlreadyExists, InternalError, ServiceUnavailable
from arges.apiserver.http.handler import Handler
from arges.apiserver.http.incoming import LocalRequest, LocalStream
from arges.apiserver.http.responses import status_response
from arges.apiserver.lifecycle import CRD_RESOURCE, Lifecycle
from arges.apiserver.pki import ensure_credentials, write_kubeconfig
from arges.apiserver.resources import Registry
from arges.apiserver.rest import Rest
from arges.apiserver.rest.options import WriteOptions
from arges.apiserver.storage import StorageError
from arges.apiserver.store import Store
from arges.metrics import Metrics
from arges.netguard import ConnectionLimits, GuardedSite

log = logging.getLogger(__name__)

READ_HEADER_TIMEOUT = 32.0
"""Seconds a client has to send a request's head (kube-apiserver's secure serving)."""
RETRY_AFTER = 1
"""Seconds a client refused for its number of connections is told to wait (``Retry-After``)."""

SOCKET = "api.sock"
"""The local socket's name in the data directory (see :attr:`ApiServer.socket_path`)."""
UNIX_PATH_MAX = 108
"""Bytes a Unix socket's path may take, its terminating NUL included (``sun_path``, unix(7))."""

KUBE_VERSION = (1, 31)
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class ApiServerConfig:
    """How to run the API server.

    ``address``/``port``: where HTTPS listens (port 0 picks a free one).
    ``history_seconds``: how long the change log keeps events for watches to resume from.
    ``bookmark_interval``: seconds of idle watch before a BOOKMARK is sent.
    ``crds``: CustomResourceDefinition objects to install at start.
    ``connections_per_client``/``connections``: open connections allowed per client address
    and in all; the excess is answered ``429 Too Many Requests`` and closed (see
    :func:`refusal`). Far above what kubectl or a controller opens (one per watch, a few for
    requests): a limit for a host that opens connections and holds them.
    """

    data_dir: Path
    address: str = "127.0.0.1"
    port: int = 6443
    history_seconds: float = 300.0
    bookmark_interval: float = 60.0
    crds: Sequence[dict[str, Any]] = field(default_factory=tuple)
    connections_per_client: int = 256
    connections: int = 8192


def refusal() -> bytes:
    """The complete response a connection over the limits gets: what kube-apiserver answers a
    request over its in-flight limits (``tooManyRequests`` in apiserver's filters, for
    max-in-flight and for priority and fairness alike): ``429`` with ``Retry-After: 1`` and a
    plain-text line, which client-go retries after the wait it names. Written without aiohttp,
    before the request is parsed: the connection costs nothing more than its socket."""
    body = b"Too many requests, please try again later.\n"
    head = (
        "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\n"
        f"Retry-After: {RETRY_AFTER}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _own_write() -> WriteOptions:
    return WriteOptions(field_manager="arges", admission=False)


def version_info() -> dict[str, str]:
    """The ``/version`` document: the Kubernetes API level this server implements."""
    major, minor = KUBE_VERSION
    return {
        "major": str(major),
        "minor": str(minor),
        "gitVersion": f"v{major}.{minor}.0+arges-{__version__}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


def client_host(address: str) -> str:
    """The address clients should use for a listening address (wildcards become loopback)."""
    if address in ("0.0.0.0", ""):
        return "127.0.0.1"
    if address == "::":
        return "::1"
    return address


class ApiServer:
    """One running embedded API server (see the module docstring)."""

    def __init__(self, config: ApiServerConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self.mounts: dict[str, instrument.Handler] = {}
        """Path prefixes served by other handlers on this port (``/metrics``, ``/ui``)."""
        self.token = ""
        """The admin token, once started."""
        self.data_dir = config.data_dir
        self.kubeconfig_path = config.data_dir / "kubeconfig"
        self.socket_path: Path | None = None
        """The same API in plain HTTP on a Unix socket in the data directory, once started;
        for the clients in this process (the controllers), which skip TLS on every request.
        Only the directory's owner can open it (the directory is 0700, the socket 0600); still
        authenticated by token. None when the path is too long for a Unix socket."""
        self._ready = False
        self._runner: web.AppRunner | None = None
        self.store: Store | None = None
        self.lifecycle: Lifecycle | None = None
        self.port = config.port
        self.rest: Rest | None = None
        self.audit: AuditLog | None = None
        self.limits: ConnectionLimits | None = None
        """Open connections per client, and how many were refused, once started."""
        self._instrument: instrument.Instrument | None = None

    @property
    def url(self) -> str:
        host = client_host(self.config.address)
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{self.port}"

    async def start(self) -> None:
        """Start serving; returns once ``/readyz`` would answer ``ok``.

        Raises:
            StorageError: the database cannot be opened.
            OSError: the address cannot be bound.
        """
        cfg = self.config
        cfg.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        cfg.data_dir.chmod(0o700)
        creds = ensure_credentials(cfg.data_dir, [client_host(cfg.address)])
        self.token = creds.token
        try:
            encryption = ensure_config(cfg.data_dir / "pki")
        except EncryptionError as exc:
            raise StorageError(str(exc)) from exc
        store = Store.open(
            cfg.data_dir / "state.db", retention=cfg.history_seconds, encryption=encryption
        )
        self.audit = AuditLog(cfg.data_dir / "audit" / "audit.log")
        self.store = store
        builtins = builtin_types() + webhook_configuration_types()
        builtin_keys = frozenset((rt.group, rt.plural) for rt in builtins)
        crd_rt = crd.crd_type(builtin_keys | {(crd.GROUP, "customresourcedefinitions")})
        registry = Registry([*builtins, crd_rt])
        for entry in store.items(CRD_RESOURCE):
            try:
                registry.put(crd.resource_type(entry.object()))
            except (ValueError, KeyError) as exc:
                log.error("stored CRD %s cannot be served: %s", entry.name, exc)
        await store.start()
        rest = Rest(store, registry)
        self.rest = rest
        self.lifecycle = Lifecycle(rest, registry)
        self.lifecycle.start()
        await self._bootstrap(rest, registry)
        handler = Handler(
            rest,
            registry,
            token=creds.token,
            server_address=f"{client_host(cfg.address)}:{cfg.port}",
            version_info=version_info(),
            ready=lambda: self._ready,
            bookmark_interval=cfg.bookmark_interval,
            audit_log=self.audit,
        )
        self._handler = handler
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(creds.cert, creds.key)
        app = handler.app()
        self._instrument = instrument.Instrument(self.metrics, registry)
        app.middlewares.append(instrument.middleware(self._instrument, self.mounts))
        # kube-apiserver's ReadHeaderTimeout (32 s); aiohttp's keep-alive timeout is both the
        # time a request's head may take and how long an idle connection is kept.
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=READ_HEADER_TIMEOUT
        )
        await runner.setup()
        limits = self.limits = ConnectionLimits(cfg.connections_per_client, cfg.connections)
        site = GuardedSite(
            runner,
            cfg.address,
            cfg.port,
            ssl_context=tls,
            backlog=1024,
            limits=limits,
            refusal=refusal(),
            refuse_after_request=True,
        )
        await site.start()
        self._runner = runner
        await self._listen_locally(runner)
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        write_kubeconfig(self.kubeconfig_path, self.url, creds)
        self._ready = True
        log.info("API server ready at %s (kubeconfig: %s)", self.url, self.kubeconfig_path)

    async def _listen_locally(self, runner: web.AppRunner) -> None:
        path = self.data_dir / SOCKET
        if len(os.fsencode(path)) >= UNIX_PATH_MAX:
            log.info("no local socket: %s is too long for a Unix socket", path)
            return
        path.unlink(missing_ok=True)  # left by a process that was killed
        # The data directory (0700) already keeps other users out; the mode says so too.
        await web.UnixSite(runner, str(path)).start()
        path.chmod(0o600)
        self.socket_path = path

    async def _bootstrap(self, rest: Rest, registry: Registry) -> None:
        ns_type = registry.get("", "namespaces")
        assert ns_type is not None
        for name in DEFAULT_NAMESPACES:
            if rest.store.get("namespaces", "", name) is None:
                with contextlib.suppress(AlreadyExists):
                    await rest.create(
                        ns_type,
                        ns_type.storage_version(),
                        "",
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                        WriteOptions(field_manager="kube-apiserver", admission=False),
                    )
        await install_crds(rest, registry, self.config.crds)

    async def local(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> tuple[int, bytes]:
        """The answer (status, body) to a request from this process, as the API port gives
        it (the same handler, audit and request metrics) without HTTP in between: the
        controllers of ``arges up`` (see :mod:`arges.apiserver.http.incoming`). ``path`` is
        without its query, ``params`` the query. A watch goes to :meth:`local_watch`.

        A write runs in a task of its own, as aiohttp runs each request: a caller cancelled
        meanwhile does not cut it short (a write it started is finished). A read runs in the
        caller's task: cut short, it changes nothing, and the hop to a task of its own cost
        it 20 us of CPU, half of a GET's.

        Not started or stopped, it answers 503 (``ServiceUnavailable``).
        """
        if self._instrument is None or not self._ready:
            response: web.StreamResponse = status_response(
                ServiceUnavailable("the API server is not running")
            )
        else:
            request = LocalRequest(method, path, params, headers, body or b"")
            handler = self._handler
            answer = self._instrument.observe(request, lambda: handler.respond(request))
            try:
                if method == "GET":
                    response = await answer
                else:
                    response = await asyncio.shield(asyncio.ensure_future(answer))
            except Exception:  # what aiohttp answers 500 (an audit line that cannot be written)
                log.exception("%s %s (local) failed", method, path)
                response = status_response(InternalError("an internal error occurred"))
        return _whole(response)

    async def local_watch(
        self, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[int, bytes | LocalStream]:
        r"""A watch from this process, served as :meth:`local` serves a request (the same
        handler, audit and metrics) with its events written to a
        :class:`~arges.apiserver.http.incoming.LocalStream` instead of a socket: ``(200,
        stream)`` once the watch has begun, or ``(status, body)`` when it was refused
        (401, 404, 400: the Status it was answered with). ``params`` is the watch's query
        (``watch=1`` among them).

        The stream ends when the watch does (its timeout, the server stopping); the caller
        :meth:`~arges.apiserver.http.incoming.LocalStream.close`\ s it when it goes away,
        which ends the watch.
        """
        if self._instrument is None or not self._ready:
            return _whole(status_response(ServiceUnavailable("the API server is not running")))
        stream = LocalStream()
        request = LocalRequest("GET", path, params, headers, stream=stream)
        handler = self._handler
        answer = asyncio.ensure_future(
            self._instrument.observe(request, lambda: handler.respond(request))
        )
        answer.add_done_callback(lambda _: stream.end())
        started = asyncio.ensure_future(stream.started.wait())
        try:
            await asyncio.wait((answer, started), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            answer.cancel()
            raise
        finally:
            started.cancel()
        if stream.started.is_set():
            stream.when_closed(answer.cancel)
            return 200, stream
        try:
            response = answer.result()
        except Exception:  # what aiohttp answers 500
            log.exception("WATCH %s (local) failed", path)
            response = status_response(InternalError("an internal error occurred"))
        return _whole(response)

    async def stop(self) -> None:
        """Stop accepting requests, end watches, finish queued writes, close the database."""
        self._ready = False
        if self._runner is not None:
            for task in list(self._handler.watches):
                task.cancel()
            await self._runner.cleanup()
            self._runner = None
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
            self.socket_path = None
        if self.lifecycle is not None:
            await self.lifecycle.stop()
        if self.rest is not None:
            await self.rest.close()
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self.audit is not None:
            self.audit.close()
            self.audit = None


def _whole(response: web.StreamResponse) -> tuple[int, bytes]:
    """(status, body) of an answer made whole (a local request's)."""
    raw = response.body if isinstance(response, web.Response) else None
    return response.status, raw if isinstance(raw, bytes) else b""


async def install_crds(rest: Rest, registry: Registry, crds: Sequence[dict[str, Any]]) -> None:
    """Create each CRD, or replace its spec when it differs from the stored one.

    These are the server's own writes at start: no admission webhook is called for them.

    Raises:
        StatusError: when a CRD is invalid (the server would refuse it from kubectl too).
    """
    rt = registry.get(crd.GROUP, "customresourcedefinitions")
    assert rt is not None
    version = rt.storage_version()
    for obj in crds:
        name = obj["metadata"]["name"]
        existing = rest.store.get(rt.resource, "", name)
        if existing is None:
            await rest.create(rt, version, "", dict(obj), _own_write())
            continue
        current = existing.object()
        if current.get("spec") != obj.get("spec"):
            current["spec"] = obj["spec"]
            await rest.update(rt, version, "", name, current, _own_write())
