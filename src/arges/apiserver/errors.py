"""The API server's one exception tree, each error a Kubernetes ``Status``.

Every failure a request can meet is raised as a :class:`StatusError` (or a subclass) anywhere
below the HTTP layer, and translated to a ``meta/v1 Status`` body exactly once, in
:mod:`arges.apiserver.http`. Codes, reasons and message shapes follow kube-apiserver
(``k8s.io/apimachinery/pkg/api/errors``), because clients branch on them: client-go's
``IsConflict``, kopf's retry on 409, kubectl's ``Error from server (NotFound): ...``.

    StatusError
    ├── BadRequest            400 BadRequest
    ├── Unauthorized          401 Unauthorized
    ├── Forbidden             403 Forbidden
    ├── NotFound              404 NotFound
    ├── MethodNotAllowed      405 MethodNotAllowed
    ├── NotAcceptable         406 NotAcceptable
    ├── AlreadyExists         409 AlreadyExists
    ├── Conflict              409 Conflict
    ├── Gone                  410 Expired
    ├── RequestTooLarge       413 RequestEntityTooLarge
    ├── UnsupportedMediaType  415 UnsupportedMediaType
    ├── Invalid               422 Invalid (with one cause per field)
    ├── InternalError         500 InternalError
    ├── ServerError           500 (no reason: an error kube-apiserver does not type)
    └── Timeout               504 Timeout
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arges.errors import ArgesError


@dataclass(frozen=True)
class Cause:
    """One field-level reason inside an :class:`Invalid` error (``meta/v1 StatusCause``).

    ``reason`` is a Kubernetes ``CauseType`` such as ``FieldValueInvalid``,
    ``FieldValueRequired`` or ``FieldValueNotSupported``; ``field`` is the dotted path
    (``spec.bmc.port``); ``message`` is the human-readable sentence.
    """

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def render(self) -> str:
        """The cause as kube-apiserver prints it inside an aggregate message."""
        return f"{self.field}: {self.message}" if self.field else self.message


class StatusError(ArgesError):
    """A request failure with an HTTP code, a Kubernetes reason and a human message."""

    code = 500
    reason = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The error as a ``meta/v1 Status`` object (a plain JSON-ready dict)."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del body["reason"]
        if self.details:
            body["details"] = self.details
        return body


def _details(name: str | None, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": kind}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def qualified(plural: str, group: str) -> str:
    """``plural.group`` (or ``plural`` for the core group), as kube names a resource in errors."""
    return f"{plural}.{group}" if group else plural


class BadRequest(StatusError):
    """400 (``StatusReasonBadRequest``): the request itself is wrong (a body that does not
    decode, a parameter out of range)."""

    code = 400
    reason = "BadRequest"


class Unauthorized(StatusError):
    """401 (``StatusReasonUnauthorized``): the request carries no credentials the server
    accepts."""

    code = 401
    reason = "Unauthorized"


class Forbidden(StatusError):
    """403 (``StatusReasonForbidden``): the authenticated user may not do this, or admission
    refused it."""

    code = 403
    reason = "Forbidden"


class NotFound(StatusError):
    """404 (``StatusReasonNotFound``): the object, or the resource, does not exist."""

    code = 404
    reason = "NotFound"

    @classmethod
    def resource(cls, plural: str, group: str, name: str) -> NotFound:
        """``servers.metal.arges.dev "abc" not found``."""
        return cls(
            f'{qualified(plural, group)} "{name}" not found',
            details=_details(name, group, plural),
        )


class MethodNotAllowed(StatusError):
    """405 (``StatusReasonMethodNotAllowed``): the resource does not serve this verb."""

    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(StatusError):
    """406 (``StatusReasonNotAcceptable``): none of the ``Accept`` header's media types can be
    served for this request."""

    code = 406
    reason = "NotAcceptable"


class AlreadyExists(StatusError):
    """409 (``StatusReasonAlreadyExists``): a create named an object that exists."""

    code = 409
    reason = "AlreadyExists"

    @classmethod
    def resource(cls, plural: str, group: str, name: str) -> AlreadyExists:
        """``servers.metal.arges.dev "abc" already exists``."""
        return cls(
            f'{qualified(plural, group)} "{name}" already exists',
            details=_details(name, group, plural),
        )


class Conflict(StatusError):
    """409 (``StatusReasonConflict``): a write lost to a concurrent one (its
    ``resourceVersion`` is stale) or another precondition failed; clients read and retry."""

    code = 409
    reason = "Conflict"

    @classmethod
    def modified(cls, plural: str, group: str, name: str, why: str | None = None) -> Conflict:
        """The optimistic-concurrency failure every Kubernetes client knows how to retry."""
        why = why or (
            "the object has been modified; please apply your changes to the latest version "
            "and try again"
        )
        return cls(
            f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
            details=_details(name, group, plural),
        )


class Gone(StatusError):
    """410 (``StatusReasonExpired``): a list or watch asked for a ``resourceVersion`` older than
    the retained history; the client lists again."""

    code = 410
    reason = "Expired"


class RequestTooLarge(StatusError):
    """413 (``StatusReasonRequestEntityTooLarge``): the body is past the server's limit."""

    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(StatusError):
    """415 (``StatusReasonUnsupportedMediaType``): the body's ``Content-Type`` is not one this
    verb decodes (a patch type the resource does not take, say)."""

    code = 415
    reason = "UnsupportedMediaType"


class Invalid(StatusError):
    """422: the object breaks its schema or a server rule; one :class:`Cause` per field."""

    code = 422
    reason = "Invalid"

    def __init__(self, kind: str, group: str, name: str, causes: list[Cause]) -> None:
        qualified_kind = f"{kind}.{group}" if group else kind
        rendered = [c.render() for c in causes]
        summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
        super().__init__(
            f'{qualified_kind} "{name}" is invalid: {summary}',
            details={
                **_details(name, group, kind),
                "causes": [
                    {"reason": c.reason, "message": c.message, "field": c.field} for c in causes
                ],
            },
        )
        self.causes = causes


class InternalError(StatusError):
    """500 (``StatusReasonInternalError``): the server failed on a request it should have
    served (storage, a bug); the cause is in the server's log, not the answer."""

    code = 500
    reason = "InternalError"


class ServerError(StatusError):
    """500 with no reason: what kube-apiserver answers for an error that is not a Status
    (``ErrorToAPIStatus``'s ``StatusReasonUnknown``), such as a failed conversion webhook.
    kubectl prints it as ``Error from server: <message>``."""

    code = 500
    reason = ""


class ServiceUnavailable(StatusError):
    """503 (``StatusReasonServiceUnavailable``): the API server is not running (starting or
    stopped)."""

    code = 503
    reason = "ServiceUnavailable"


class Timeout(StatusError):
    """504 (``StatusReasonTimeout``): the request could not be served in time, or asked for a
    ``resourceVersion`` from the future (kube-apiserver answers that one with 504 too)."""

    code = 504
    reason = "Timeout"
