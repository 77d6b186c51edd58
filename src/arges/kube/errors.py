"""Errors from the Kubernetes API, one tree, built from the server's ``Status`` answers.

    KubeError
    ├── Unavailable     the API server could not be reached or answered 5xx / 429
    ├── NotFound        404
    ├── AlreadyExists   409 with reason AlreadyExists
    ├── Conflict        409 otherwise (stale resourceVersion, failed precondition)
    ├── Invalid         422 (the server lists the offending fields in ``causes``)
    └── Refused         any other 4xx (400, 401, 403, 405, 410, 415)

``aiohttp`` exceptions never leave :mod:`arges.kube.client`; they become :class:`Unavailable`.
"""

from __future__ import annotations

from typing import Any

from arges.errors import ArgesError


class KubeError(ArgesError):
    """An API call failed; ``code`` is the HTTP status (0 when there was no answer)."""

    def __init__(
        self, message: str, *, code: int = 0, reason: str = "", status: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.status = status or {}


class Unavailable(KubeError):
    """No answer, or a 5xx/429: worth retrying later."""


class NotFound(KubeError):
    """404: the object (or its namespace, or its kind) does not exist."""


class AlreadyExists(KubeError):
    """409 AlreadyExists: a create found the name taken."""


class Conflict(KubeError):
    """409: the object changed since it was read, or a precondition failed."""


class Invalid(KubeError):
    """422: the object breaks its schema or a server rule."""

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list((self.status.get("details") or {}).get("causes") or [])


class Refused(KubeError):
    """Any other 4xx."""


def from_status(code: int, body: Any, what: str) -> KubeError:
    """The error for an HTTP answer ``code`` with ``body`` (a Status, or anything else)."""
    status = body if isinstance(body, dict) and body.get("kind") == "Status" else {}
    reason = str(status.get("reason", ""))
    message = str(status.get("message") or f"{what}: HTTP {code}")
    cls: type[KubeError]
    if code == 404:
        cls = NotFound
    elif code == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif code == 422:
        cls = Invalid
    elif code >= 500 or code == 429:
        cls = Unavailable
    else:
        cls = Refused
    return cls(message, code=code, reason=reason, status=status)
