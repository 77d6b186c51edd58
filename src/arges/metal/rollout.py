"""Roll-outs of a TalosCluster: pure decisions on plain data, for the cluster controller.

A roll-out brings every member to what the spec wants, in stages, each finished on every
member before the next starts (:data:`STAGES`):

1. ``talos``: the Talos version, through Talos' Upgrade call with the installer image
   (``talosctl upgrade``); done when the member answers with the image's version;
2. ``kube-apiserver``, ``kube-controller-manager``, ``kube-scheduler``, ``kube-proxy`` (control
   planes) then ``kubelet`` (every member): a Kubernetes version change, as ``talosctl
   upgrade-k8s`` makes it (:mod:`arges.talos.components`): the member's running config with
   that one image changed, applied with mode NO_REBOOT;
3. ``config``: the member's whole rendered config, when it differs from what the member runs
   (a patch changed, or it was never applied), with mode AUTO: in place where Talos allows
   it, else Talos stages it and reboots.

Within a stage, control planes go first, one at a time, each only when etcd reports every
member healthy and every control plane is healthy (the previous one is back); then the
workers of each pool, at most ``maxUnavailable`` of a pool down at once (a member that is not
healthy counts as down). Config changes that need no reboot go to every member at once.

Every step is recorded on the member (:class:`Step`, in its config Secret) before it is
started, so a controller restarted at any point knows it. A call the record does not show
confirmed (Arges stopped between the two) is sent again: ApplyConfiguration is idempotent
(the same config again changes nothing, and reboots at most once), and a second Upgrade
while the first runs is ignored by Talos (its sequence is locked); but an Upgrade is never
sent again once the node has rebooted since the record, so no member is upgraded twice.
A step that fails (Talos refuses it, the member comes back on the
wrong version, or is not back healthy within the timeout) stops the whole roll-out, naming
the member and why, until the spec changes what that member should run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from arges.api.binding import Role

Stage = Literal[
    "talos",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubelet",
    "config",
]
STAGES: tuple[Stage, ...] = (
    "talos",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubelet",
    "config",
)
KUBERNETES_STAGES: tuple[Stage, ...] = STAGES[1:-1]
"""The stages named after the Kubernetes component whose image they change
(:data:`arges.talos.components.COMPONENTS`, in the same order)."""


def pending(
    *,
    version: str | None,
    wanted_version: str,
    applied: Mapping[str, str | None] | None,
    wanted: Mapping[str, str | None],
    config_current: bool,
) -> tuple[Stage, ...]:
    """The stages a member still needs, in order: ``talos`` when it reports a ``version``
    other than ``wanted_version`` (unknown until it answers); a Kubernetes stage when the
    component's image in the config it runs (``applied``, by stage name; None: Arges never
    applied one, and then ``config`` brings it all) differs from the ``wanted`` one (a
    component the config has no image for, a worker's control plane, has no stage);
    ``config`` unless ``config_current`` (the config it runs is the one rendered for it)."""
    out: list[Stage] = []
    if version is not None and version != wanted_version:
        out.append("talos")
    if applied is not None:
        out += [s for s in KUBERNETES_STAGES if wanted.get(s) and applied.get(s) != wanted[s]]
    if not config_current:
        out.append("config")
    return tuple(out)


@dataclass(frozen=True)
class Step:
    """A roll-out step on one member, as recorded before it was started.

    ``target``: the installer image (``talos``), the component image, or the config digest
    (``config``); ``boot_time``: the node's boot time (SystemStat) when the step started, so
    a reboot since is seen; ``accepted``: the node confirmed the call; ``reboots``: the step
    reboots the node; ``failed``: why it failed (the roll-out stops).
    """

    stage: Stage
    target: str
    boot_time: int
    started: dt.datetime
    accepted: bool = False
    reboots: bool = False
    failed: str | None = None

    def to_text(self) -> str:
        """The record as stored (JSON)."""
        return json.dumps(
            {
                "stage": self.stage,
                "target": self.target,
                "bootTime": self.boot_time,
                "started": self.started.isoformat(),
                "accepted": self.accepted,
                "reboots": self.reboots,
                **({"failed": self.failed} if self.failed else {}),
            },
            sort_keys=True,
        )

    @classmethod
    def from_text(cls, text: str | None) -> Step | None:
        """The record stored as ``text``; None for none, or one that does not read (a
        record this version cannot read is treated as no record)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            stage = data["stage"]
            if stage not in STAGES:
                return None
            return cls(
                stage=stage,
                target=str(data["target"]),
                boot_time=int(data["bootTime"]),
                started=dt.datetime.fromisoformat(data["started"]),
                accepted=bool(data.get("accepted")),
                reboots=bool(data.get("reboots")),
                failed=data.get("failed") or None,
            )
        except (ValueError, KeyError, TypeError):
            return None

    def confirmed(self, reboots: bool) -> Step:
        """This step, confirmed by the node (``reboots``: it reboots for it)."""
        return replace(self, accepted=True, reboots=reboots)

    def failing(self, why: str) -> Step:
        """This step, failed for ``why``."""
        return replace(self, failed=why)


Progress = Literal["done", "waiting", "resend"]


def progress(
    step: Step,
    *,
    answers: bool,
    boot_time: int | None,
    version: str | None,
    healthy: bool,
    wanted_version: str | None,
    now: dt.datetime,
    timeout: dt.timedelta,
) -> Progress | str:
    """Where a recorded step is, from what the member shows now: ``done`` (it reached the
    target and is healthy), ``waiting`` (still on its way), ``resend`` (the call was not
    confirmed and the node has not rebooted since, so it may be sent: see the module
    docstring), or, as any other string, why it failed.

    ``version`` is the Talos version the member reports and ``wanted_version`` the one a
    ``talos`` step upgrades to; ``boot_time`` the member's boot time (None while it does
    not answer).
    """
    if step.failed:
        return step.failed
    rebooted = answers and boot_time is not None and boot_time != step.boot_time
    if step.stage == "talos":
        if answers and version == wanted_version:
            return "done" if healthy else _late(step, now, timeout, "healthy")
        if rebooted:
            return f"it came back on Talos {version}, not {wanted_version}"
        if not step.accepted:
            return _unconfirmed(step, answers, now, timeout)
        return _late(step, now, timeout, f"back on Talos {wanted_version}")
    if not step.accepted:
        return _unconfirmed(step, answers, now, timeout)
    if step.reboots and not rebooted:
        return _late(step, now, timeout, "back from its reboot")
    if answers and healthy:
        return "done"
    return _late(step, now, timeout, "healthy")


def _unconfirmed(
    step: Step, answers: bool, now: dt.datetime, timeout: dt.timedelta
) -> Progress | str:
    late = _late(step, now, timeout, "confirmed by Talos")
    if late != "waiting":
        return late
    return "resend" if answers else "waiting"


def _late(step: Step, now: dt.datetime, timeout: dt.timedelta, what: str) -> Progress | str:
    if now - step.started > timeout:
        return f"not {what} within {timeout.total_seconds():.0f} s"
    return "waiting"


@dataclass(frozen=True)
class MemberRollout:
    """One member as a roll-out sees it: whether it is ``healthy`` (its Talos API answers,
    its services are healthy, etcd on a bootstrapped control plane), the stages it still
    needs (in :data:`STAGES` order), its recorded step (in flight, or failed), and whether
    its ``config`` stage reboots it."""

    server: str
    pool: str
    role: Role
    healthy: bool
    pending: tuple[Stage, ...] = ()
    step: Step | None = None
    reboots: bool = False

    @property
    def busy(self) -> bool:
        """Whether a step is in flight on it."""
        return self.step is not None and not self.step.failed


@dataclass(frozen=True)
class Decision:
    """What to do now: the ``stage`` being rolled out (None: every member is up to date),
    the members to start it on now (``start``), why others wait (``waiting``, "" when
    nothing waits), and the failure that stops the roll-out (``failed``)."""

    stage: Stage | None
    start: tuple[str, ...] = ()
    waiting: str = ""
    failed: str | None = None


def plan(
    members: Sequence[MemberRollout],
    *,
    paused: bool,
    etcd_problem: str | None,
    max_unavailable: Mapping[str, int],
) -> Decision:
    """Which members start the next step now (see the module docstring).

    ``etcd_problem`` says why etcd is not healthy (None: every member healthy);
    ``max_unavailable`` maps each worker pool to its ``maxUnavailable`` (default 1).
    """
    failed = [m for m in members if m.step is not None and m.step.failed]
    stage = next((s for s in STAGES if any(_needs(m, s) for m in members)), None)
    if failed:
        first = min(failed, key=lambda m: m.server)
        assert first.step is not None
        why = f"member {first.server} ({first.step.stage}): {first.step.failed}"
        return Decision(stage or first.step.stage, failed=why)
    if stage is None:
        return Decision(None)
    if paused:
        return Decision(stage, waiting="the roll-out is paused (spec.paused)")
    control_planes = [m for m in members if m.role == "controlplane"]
    if any(_needs(m, stage) for m in control_planes):
        return _control_planes(stage, control_planes, etcd_problem)
    if stage == "config":
        at_once = sorted(m.server for m in members if _startable(m, stage) and not m.reboots)
        if at_once:
            return Decision(stage, tuple(at_once))
    return _workers(stage, [m for m in members if m.role == "worker"], max_unavailable)


def _needs(member: MemberRollout, stage: Stage) -> bool:
    return stage in member.pending or (member.step is not None and member.step.stage == stage)


def _startable(member: MemberRollout, stage: Stage) -> bool:
    return stage in member.pending and member.step is None


def _control_planes(
    stage: Stage, control_planes: list[MemberRollout], etcd_problem: str | None
) -> Decision:
    busy = [m.server for m in control_planes if m.busy]
    if busy:
        return Decision(stage, waiting=f"control plane {busy[0]} is not done yet")
    sick = [m.server for m in control_planes if not m.healthy]
    if sick:
        return Decision(stage, waiting=f"control plane {sick[0]} is not healthy")
    if etcd_problem is not None:
        return Decision(stage, waiting=f"etcd is not healthy: {etcd_problem}")
    ready = sorted(m.server for m in control_planes if _startable(m, stage))
    if stage == "config":
        at_once = [m.server for m in control_planes if _startable(m, stage) and not m.reboots]
        if at_once:
            return Decision(stage, tuple(sorted(at_once)))
    return Decision(stage, tuple(ready[:1]))


def _workers(
    stage: Stage, workers: list[MemberRollout], max_unavailable: Mapping[str, int]
) -> Decision:
    start: list[str] = []
    waiting: list[str] = []
    for pool in sorted({m.pool for m in workers if _needs(m, stage)}):
        members = [m for m in workers if m.pool == pool]
        down = sum(1 for m in members if m.busy or not m.healthy)
        room = max_unavailable.get(pool, 1) - down
        ready = sorted(m.server for m in members if _startable(m, stage) and m.healthy)
        start += ready[: max(room, 0)]
        if ready[max(room, 0) :]:
            waiting.append(
                f"pool {pool}: {len(ready[max(room, 0) :])} more wait their turn "
                f"(maxUnavailable {max_unavailable.get(pool, 1)}, {down} down now)"
            )
        elif not ready and any(_startable(m, stage) for m in members):
            waiting.append(f"pool {pool}: the members to update are not healthy")
    return Decision(stage, tuple(start), "; ".join(waiting))
