"""``metav1.Condition`` lists: set one, read one, keeping transition times honest."""

from __future__ import annotations

import datetime as dt
from typing import Any

from arges.api.base import Condition, ConditionStatus


def find(conditions: list[Condition] | None, kind: str) -> Condition | None:
    """The condition of type ``kind``, if present."""
    return next((c for c in conditions or [] if c.type == kind), None)


def is_true(conditions: list[Condition] | None, kind: str) -> bool:
    """Whether the condition of type ``kind`` is present with status ``"True"``."""
    found = find(conditions, kind)
    return found is not None and found.status == "True"


def set_condition(
    conditions: list[Condition] | None,
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: dt.datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """A copy of ``conditions`` with ``kind`` set (in its place, or appended); its
    ``lastTransitionTime`` (whole seconds, as ``metav1.Time``) moves only when the status
    changes (Kubernetes API conventions)."""
    previous = find(conditions, kind)
    now = now.replace(microsecond=0)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=observed_generation,
    )
    if previous is None:
        return [*(conditions or []), updated]
    return [updated if c.type == kind else c for c in conditions or []]


def condition_patch(
    obj: dict[str, Any],
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: dt.datetime,
    observed_generation: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The status fields to merge into ``obj`` (an object's JSON) so that it has condition
    ``kind`` as given and the ``extra`` status fields; None when it has them already. Made for
    :meth:`arges.kube.client.KubeClient.update_status`."""
    current_status = obj.get("status") or {}
    if _holds(current_status, kind, status, reason, message, observed_generation, extra):
        return None
    current = [Condition.model_validate(c) for c in current_status.get("conditions") or []]
    updated = set_condition(
        current, kind, status, reason, message, now=now, observed_generation=observed_generation
    )
    wanted = {"conditions": [c.to_json() for c in updated], **(extra or {})}
    have = {
        "conditions": [c.to_json() for c in current],
        **{k: current_status.get(k) for k in extra or {}},
    }
    return None if wanted == have else wanted


def _holds(
    current_status: dict[str, Any],
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    observed_generation: int | None,
    extra: dict[str, Any] | None,
) -> bool:
    """Whether the status as stored already says exactly this: one condition ``kind`` with
    these fields, and the ``extra`` values. Read on the JSON, since most writes a controller
    considers find nothing to change (the power controller asks on every reconcile), and
    parsing every condition to learn that cost most of the answer."""
    found = [c for c in current_status.get("conditions") or [] if c.get("type") == kind]
    if len(found) != 1:
        return False
    (condition,) = found
    return (
        condition.get("status") == status
        and condition.get("reason") == reason
        and condition.get("message") == message
        and condition.get("observedGeneration") == observed_generation
        and all(current_status.get(k) == v for k, v in (extra or {}).items())
    )
