"""What each dashboard page shows, computed from the mirrored objects (no API calls).

Functions here turn API objects into plain rows for the templates. They choose what a page
may show: a Server's BMC appears as protocol, address and the *name* of its credentials
Secret; Secrets themselves, tokens and machine configs are never mirrored or shown.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from arges.metal.stage import BootReason
from arges.metrics.boots import BootLog, BootRecord
from arges.metrics.registry import SERVER_STATES, server_states
from arges.selectors import LabelSelector

Body = Mapping[str, Any]

STATE_FILTERS = (*SERVER_STATES, "unaccepted", "attention")
"""The values of the servers page's state filter."""


def conditions(body: Body) -> list[dict[str, Any]]:
    """The object's status conditions."""
    return list((body.get("status") or {}).get("conditions") or [])


def condition(body: Body, kind: str) -> dict[str, Any] | None:
    """One condition by type."""
    return next((c for c in conditions(body) if c.get("type") == kind), None)


def attention(body: Body) -> list[str]:
    """Why a server needs a person: its failing conditions, as ``Type: reason``."""
    out = []
    for found in conditions(body):
        kind, status = found.get("type"), found.get("status")
        failing = kind == "PowerManagement" and status == "False" and found.get("reason") != "NoBMC"
        failing = failing or (kind == "Wipe" and status == "False")
        failing = failing or (kind == "DeletionBlocked" and status == "True")
        if failing:
            out.append(f"{kind}: {found.get('reason', '')}")
    return out


@dataclass(frozen=True)
class ServerRow:
    """One line of the servers table."""

    name: str
    hostname: str
    accepted: bool
    cordoned: bool
    power: str
    clean: bool
    allocated: str
    """The consumer holding it (``Kind namespace/name``), or empty."""
    classes: list[str]
    labels: dict[str, str]
    states: list[str]
    last_boot: str
    last_boot_time: str
    problems: list[str] = field(default_factory=list)
    has_bmc: bool = False


def _consumer(binding: Body | None) -> str:
    if binding is None:
        return ""
    ref = (binding.get("spec") or {}).get("consumerRef") or {}
    where = f"{ref['namespace']}/" if ref.get("namespace") else ""
    return f"{ref.get('kind', '')} {where}{ref.get('name', '')}".strip()


def memberships(classes: Iterable[Body]) -> dict[str, list[str]]:
    """Server name -> the ServerClasses it belongs to (from the classes' status)."""
    out: dict[str, list[str]] = {}
    for body in classes:
        status = body.get("status") or {}
        name = str((body.get("metadata") or {}).get("name"))
        for server in [
            *(status.get("serversAvailable") or []),
            *(status.get("serversInUse") or []),
        ]:
            out.setdefault(server, []).append(name)
    return {k: sorted(v) for k, v in out.items()}


def last_boot(body: Body, boots: BootLog) -> tuple[str, str]:
    """(decision, when) of a server's last network boot: the one seen since Arges started,
    else what the ``PXEBooted`` condition recorded."""
    name = str((body.get("metadata") or {}).get("name"))
    record = boots.last(name)
    if record is not None:
        return record.decision, when(record.time)
    found = condition(body, "PXEBooted")
    if found is None:
        return "", ""
    decisions: dict[str, str] = {
        BootReason.AGENT: "agent",
        BootReason.TARGET: "target",
        BootReason.DISK: "disk",
    }
    decision = decisions.get(str(found.get("reason")), "not-ready")
    return decision, str(found.get("lastTransitionTime") or "")


def server_row(body: Body, binding: Body | None, classes: list[str], boots: BootLog) -> ServerRow:
    """The table row of one Server."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    decision, boot_time = last_boot(body, boots)
    return ServerRow(
        name=str(meta.get("name")),
        hostname=str(status.get("hostname") or ""),
        accepted=bool(spec.get("accepted")),
        cordoned=bool(spec.get("cordoned")),
        power=str(status.get("power") or "unknown"),
        clean=bool(status.get("isClean")),
        allocated=_consumer(binding),
        classes=classes,
        labels=dict(meta.get("labels") or {}),
        states=server_states(body),
        last_boot=decision,
        last_boot_time=boot_time,
        problems=attention(body),
        has_bmc=spec.get("bmc") is not None,
    )


def matches(row: ServerRow, state: str, server_class: str, selector: LabelSelector) -> bool:
    """Whether a row passes the servers page's filters."""
    if state == "unaccepted" and row.accepted:
        return False
    if state == "attention" and not row.problems:
        return False
    if state in SERVER_STATES and state not in row.states:
        return False
    if server_class and server_class not in row.classes:
        return False
    return selector.matches(row.labels)


def state_counts(servers: Iterable[Body]) -> dict[str, int]:
    """How many servers are in each state, plus ``unaccepted`` and ``attention``."""
    counts = dict.fromkeys(STATE_FILTERS, 0)
    for body in servers:
        for state in server_states(body):
            counts[state] += 1
        if not (body.get("spec") or {}).get("accepted"):
            counts["unaccepted"] += 1
        if attention(body):
            counts["attention"] += 1
    return counts


def phases(clusters: Iterable[Body]) -> dict[str, int]:
    """TalosClusters by phase."""
    return dict(
        sorted(
            Counter(
                str((c.get("status") or {}).get("phase") or "Pending") for c in clusters
            ).items()
        )
    )


@dataclass(frozen=True)
class EventRow:
    """One Event as a person reads it."""

    type: str
    reason: str
    message: str
    kind: str
    name: str
    namespace: str
    count: int
    last: str


def event_time(body: Body) -> str:
    """An Event's latest time (``lastTimestamp``, else ``eventTime``, else creation)."""
    meta = body.get("metadata") or {}
    return str(
        body.get("lastTimestamp") or body.get("eventTime") or meta.get("creationTimestamp") or ""
    )


def events(
    bodies: Iterable[Body], *, kind: str | None = None, name: str | None = None, limit: int = 20
) -> list[EventRow]:
    """The newest Events (about one object, with ``kind`` and ``name``)."""
    rows = []
    for body in bodies:
        involved = body.get("involvedObject") or {}
        if kind is not None and involved.get("kind") != kind:
            continue
        if name is not None and involved.get("name") != name:
            continue
        rows.append(
            EventRow(
                type=str(body.get("type") or "Normal"),
                reason=str(body.get("reason") or ""),
                message=str(body.get("message") or ""),
                kind=str(involved.get("kind") or ""),
                name=str(involved.get("name") or ""),
                namespace=str(involved.get("namespace") or ""),
                count=int(body.get("count") or 1),
                last=event_time(body),
            )
        )
    rows.sort(key=lambda r: r.last, reverse=True)
    return rows[:limit]


def newest_events(objects: Mapping[str, Body], limit: int) -> list[str]:
    """What the dashboard forgets of the Events it holds: nothing up to ``limit`` and a
    quarter more, then the keys of all but the ``limit`` newest. Forgetting in batches sorts
    the Events once per ``limit // 4`` new ones, not at each (a constant cost per Event)."""
    if len(objects) <= limit + limit // 4:
        return []
    ordered = sorted(objects, key=lambda k: event_time(objects[k]))
    return ordered[: len(objects) - limit]


def boot_rows(records: Iterable[BootRecord]) -> list[dict[str, str]]:
    """Boot records for the templates."""
    return [
        {
            "time": when(r.time),
            "uuid": r.uuid,
            "mac": r.mac,
            "client": r.client,
            "firmware": r.firmware,
            "decision": r.decision,
            "reason": r.reason,
        }
        for r in records
    ]


def when(moment: dt.datetime) -> str:
    """A time as the API writes them."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bmc(body: Body) -> dict[str, str] | None:
    """What the server page shows of a BMC: where and how, never the credentials."""
    spec = (body.get("spec") or {}).get("bmc")
    if not spec:
        return None
    ref = spec.get("credentialsSecretRef") or {}
    return {
        "protocol": str(spec.get("protocol") or "ipmi"),
        "address": str(spec.get("endpoint") or spec.get("address") or ""),
        "port": str(spec.get("port") or ""),
        "system": str(spec.get("systemId") or ""),
        "verify": "off (insecure)" if spec.get("insecure") else "on",
        "credentials": f"Secret {ref.get('namespace', 'default')}/{ref['name']}"
        if ref.get("name")
        else "none",
    }


MEMBER_FIELDS = (
    "server",
    "role",
    "pool",
    "state",
    "talosVersion",
    "kubernetesVersion",
    "rollout",
    "message",
)
"""The fields of a TalosCluster's ``status.members[]`` the clusters page shows."""


def members(cluster: Body) -> tuple[list[dict[str, str]], int, int]:
    """A TalosCluster's members (:data:`MEMBER_FIELDS`, empty when unset), and its ready and
    desired server counts."""
    spec = cluster.get("spec") or {}
    status = cluster.get("status") or {}
    rows = [{k: str(m.get(k) or "") for k in MEMBER_FIELDS} for m in status.get("members") or []]
    desired = int((spec.get("controlPlane") or {}).get("replicas", 1))
    desired += sum(int(w.get("replicas", 1)) for w in spec.get("workers") or [])
    ready = sum(1 for m in rows if m["state"] == "Ready")
    return rows, ready, desired


def versions(cluster: Body) -> str:
    """A TalosCluster's versions and roll-out progress in one line (``Talos v1.11.7 ·
    Kubernetes 1.34.2 · updated 2/3``), each part only when its status field is set."""
    status = cluster.get("status") or {}
    parts = (
        ("Talos", status.get("talosVersion")),
        ("Kubernetes", status.get("kubernetesVersion")),
        ("updated", status.get("updated")),
    )
    return " · ".join(f"{label} {value}" for label, value in parts if value)


def environment(body: Body) -> dict[str, Any]:
    """An Environment's assets: wanted (spec) against cached (status)."""
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    ready = condition(body, "Ready") or {}
    assets = []
    for asset in ("kernel", "initrd"):
        wanted = spec.get(asset) or {}
        cached = status.get(asset) or {}
        expected = wanted.get("sha512") or ""
        assets.append(
            {
                "name": asset,
                "url": str(wanted.get("url") or ""),
                "expected": expected,
                "cached": str(cached.get("sha512") or ""),
                "size": int(cached.get("size") or 0),
                "verified": bool(cached) and (not expected or cached.get("sha512") == expected),
            }
        )
    return {
        "name": str((body.get("metadata") or {}).get("name")),
        "ready": ready.get("status") == "True",
        "reason": str(ready.get("reason") or ""),
        "message": str(ready.get("message") or ""),
        "assets": assets,
    }
