"""The audit log: every write to the API, who made it and what it named, never a body.

One JSON line per write request (POST, PUT, PATCH, DELETE), shaped as kube-apiserver's
``audit.k8s.io/v1`` Event at level ``Metadata`` and stage ``ResponseComplete``: ``verb``
(create, update, patch, delete, deletecollection), ``user`` (``arges-admin`` for the admin
token, ``system:anonymous`` for a request without it), ``userAgent``, ``sourceIPs``,
``requestURI``, ``objectRef`` (resource, namespace, name, API group and version,
subresource), ``responseStatus.code`` and the timestamps. At that level kube-apiserver logs no
request or response body, and neither does this log, so no Secret's data is ever in it.

The file is ``DATA_DIR/audit/audit.log`` (directory 0700, files 0600), rotated by size as
kube-apiserver's ``--audit-log-maxsize``/``--audit-log-maxbackup`` do (10 MiB, 5 old files:
``audit.log.1`` is the newest of them), with the standard library's rotating handler.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import json
import logging
import logging.handlers
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

ADMIN_USER = "arges-admin"
ANONYMOUS_USER = "system:anonymous"
MAX_BYTES = 10 * 2**20
BACKUPS = 5
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class ObjectRef:
    """What a write named: ``name`` None for a collection (create before it is known)."""

    resource: str
    namespace: str | None
    name: str | None
    api_group: str
    api_version: str
    subresource: str | None


@dataclass
class Trail:
    """What the audit log learns of a request while it is handled: whether the admin token
    came with it, what it named, and a created object's name."""

    authenticated: bool = False
    ref: ObjectRef | None = None
    created: str | None = None


_TRAIL: contextvars.ContextVar[Trail] = contextvars.ContextVar("arges_audit_trail")


def begin() -> Trail:
    """A new trail for the request being handled (each runs in its own task)."""
    trail = Trail()
    _TRAIL.set(trail)
    return trail


def current() -> Trail:
    """The trail of the request being handled."""
    return _TRAIL.get()


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler whose files are created with mode 0600."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, self.mode.replace("w", "a"), encoding=self.encoding)


class AuditLog:
    """Appends audit events to ``path`` (see the module docstring)."""

    def __init__(self, path: Path, *, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        self.path = path
        self._handler = _PrivateRotatingHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        # A logger of its own, outside the logging tree: audit lines never reach the
        # process log, and the process log never reaches the audit file.
        self._logger = logging.Logger(f"arges.audit:{path}")
        self._logger.addHandler(self._handler)

    def request(self, request: web.Request, trail: Trail, code: int, received: dt.datetime) -> None:
        """Append the event of ``request`` if it is a write (answered ``code``)."""
        if request.method not in VERBS:
            return
        ref = trail.ref
        if ref is not None and ref.name is None and trail.created:
            ref = dataclasses.replace(ref, name=trail.created)
        self.record(
            method=request.method,
            uri=request.path_qs,
            ref=ref,
            authenticated=trail.authenticated,
            user_agent=request.headers.get("User-Agent", ""),
            source=request.remote or "",
            code=code,
            received=received,
        )

    def record(
        self,
        *,
        method: str,
        uri: str,
        ref: ObjectRef | None,
        authenticated: bool,
        user_agent: str,
        source: str,
        code: int,
        received: dt.datetime,
    ) -> None:
        """Append the event of one write request that was answered ``code``."""
        verb = VERBS.get(method, method.lower())
        if verb == "delete" and ref is not None and ref.name is None:
            verb = "deletecollection"
        event: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": str(uuid.uuid4()),
            "stage": "ResponseComplete",
            "requestURI": uri,
            "verb": verb,
            "user": {"username": ADMIN_USER if authenticated else ANONYMOUS_USER},
            "sourceIPs": [source] if source else [],
            "userAgent": user_agent,
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": _micro(received),
            "stageTimestamp": _micro(dt.datetime.now(dt.UTC)),
        }
        if ref is not None:
            obj = {
                "resource": ref.resource,
                "namespace": ref.namespace,
                "name": ref.name,
                "apiGroup": ref.api_group,
                "apiVersion": ref.api_version,
                "subresource": ref.subresource,
            }
            event["objectRef"] = {k: v for k, v in obj.items() if v}
        self._logger.info("%s", json.dumps(event, separators=(",", ":")))

    def close(self) -> None:
        self._handler.close()


def _micro(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
