"""``metav1.Condition`` lists: set one, read one, keeping transition times honest."""

from __future__ import annotations

import datetime as dt

from arges.api.base import Condition, ConditionStatus


def find(conditions: list[Condition] | None, kind: str) -> Condition | None:
    """The condition of type ``kind``, if present."""
    return next((c for c in conditions or [] if c.type == kind), None)


def is_true(conditions: list[Condition] | None, kind: str) -> bool:
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
    """A copy of ``conditions`` with ``kind`` set; ``lastTransitionTime`` (whole seconds, as
    ``metav1.Time``) moves only when the status changes (Kubernetes API conventions)."""
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
    out = [c for c in conditions or [] if c.type != kind]
    out.append(updated)
    return out
