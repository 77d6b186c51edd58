"""The options of REST operations, as kube-apiserver's ``meta/v1`` types carry them.

``WriteOptions`` (create, update, patch), ``DeleteOptions``, ``ListOptions`` (list and
watch), one page of a list (``ListResult``), and the parsing and errors of a
``resourceVersion`` parameter, which the HTTP handler, lists and watches share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arges.apiserver import managedfields as mf
from arges.apiserver.admission import ADMIN, UserInfo, meta_options
from arges.apiserver.entries import Entry
from arges.apiserver.errors import BadRequest, StatusError, Timeout
from arges.apiserver.selectors import FieldSelector
from arges.selectors import LabelSelector


@dataclass
class WriteOptions:
    """Query parameters common to writes; ``warnings`` collects ``Warning`` headers.

    ``field_manager`` is the ``fieldManager`` parameter, ``user_agent`` the request's header
    (the manager when there is no parameter), ``force`` the apply parameter (None: absent);
    ``created`` is set when a PATCH (an apply) created the object. ``user`` is who webhooks
    are told makes the write; ``admission`` false skips the webhooks (the server's own
    bootstrap writes, which must not wait for webhooks that are not up yet).
    """

    dry_run: bool = False
    field_validation: str = "Warn"
    warnings: list[str] = field(default_factory=list)
    field_manager: str = ""
    user_agent: str = ""
    force: bool | None = None
    created: bool = False
    user: UserInfo = ADMIN
    admission: bool = True

    def review_options(self, kind: str) -> dict[str, Any]:
        """The ``CreateOptions`` or ``UpdateOptions`` admission webhooks are shown."""
        return meta_options(
            kind,
            dryRun=["All"] if self.dry_run else None,
            fieldManager=self.field_manager,
            fieldValidation=self.field_validation if self.field_validation != "Warn" else None,
        )

    @property
    def manager(self) -> str:
        """Who the write's fields belong to (kube-apiserver's ``managerOrUserAgent``)."""
        return self.field_manager or mf.manager_from_user_agent(self.user_agent)


@dataclass
class DeleteOptions:
    """``meta/v1 DeleteOptions`` as far as this server honours them; admission webhooks'
    warnings are appended to ``warnings``."""

    propagation: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False
    user: UserInfo = ADMIN
    admission: bool = True
    """False for deletions kube-apiserver makes without admission (a deleted CRD's objects,
    expired Events)."""
    warnings: list[str] = field(default_factory=list)

    def review_options(self) -> dict[str, Any]:
        """The ``DeleteOptions`` admission webhooks are shown."""
        preconditions = {
            k: v for k, v in (("uid", self.uid), ("resourceVersion", self.resource_version)) if v
        }
        return meta_options(
            "DeleteOptions",
            preconditions=preconditions,
            propagationPolicy=self.propagation,
            dryRun=["All"] if self.dry_run else None,
        )


@dataclass
class ListOptions:
    """``meta/v1 ListOptions`` for list and watch."""

    labels: LabelSelector = field(default_factory=LabelSelector)
    fields: FieldSelector = field(default_factory=FieldSelector)
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class ListResult:
    """One page of a list: entries in key order, at revision ``rv``."""

    entries: list[Entry]
    rv: int
    continue_token: str = ""
    remaining: int | None = None


def parse_rv(text: str) -> int:
    """A ``resourceVersion`` query parameter as an integer.

    Raises:
        BadRequest: when it is not a non-negative integer.
    """
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f'resourceVersion: Invalid value: "{text}": must be an integer') from None
    if value < 0:
        raise BadRequest(f'resourceVersion: Invalid value: "{text}": must be non-negative')
    return value


def too_large(wanted: int, current: int) -> StatusError:
    """The 504 kube-apiserver answers for a resourceVersion from the future."""
    return Timeout(
        f"Too large resource version: {wanted}, current: {current}",
        details={
            "causes": [
                {
                    "reason": "ResourceVersionTooLarge",
                    "message": "Too large resource version",
                }
            ],
            "retryAfterSeconds": 1,
        },
    )
