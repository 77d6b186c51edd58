"""Roll-outs of a TalosCluster to its running members (what :mod:`arges.metal.rollout`
decides, done through Talos' API).

Per reconcile, once etcd is bootstrapped:

1. each member's whole config is rendered: its pool's rendering with the ServerClass's and
   then the Server's patches, in the order ``/configdata`` applies them, so a member is
   given exactly what it would fetch if it booted afresh;
2. each recorded step is checked (:func:`arges.metal.rollout.progress`): done (the record is
   cleared), still on its way, to be sent again, or failed (recorded, with an Event);
3. what each member still needs (:func:`arges.metal.rollout.pending`) and, for a config
   change, whether it reboots the member (a dry run of ApplyConfiguration mode AUTO, asked
   once per member and rendering);
4. :func:`arges.metal.rollout.plan` names the members to start now; each step is recorded
   on the member's config Secret, then sent: Upgrade with the installer image, or
   ApplyConfiguration (NO_REBOOT with one image changed for a Kubernetes component, AUTO with
   the whole config for ``config``); Talos' confirmation is recorded, with the config the
   member now runs.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from arges.api.binding import ServerBinding
from arges.api.cluster import RolloutState, TalosCluster
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.controllers.clusters.observe import Observation, Observer, Talos, etcd_problem
from arges.controllers.clusters.owned import record_step, text
from arges.controllers.clusters.state import UP_TO_DATE, Round
from arges.kube.errors import Conflict, NotFound
from arges.metal.clusters import MemberView
from arges.metal.memberconfig import APPLIED_KEY, digest, record_of
from arges.metal.rollout import (
    KUBERNETES_STAGES,
    Decision,
    MemberRollout,
    Stage,
    Step,
    pending,
    plan,
    progress,
)
from arges.talos.components import Component, image, images, tag, with_image
from arges.talos.documents import decode
from arges.talos.errors import RequestFailed, TalosApiError, TalosError
from arges.talos.patches import PatchSet, apply_text, patch_set

log = logging.getLogger(__name__)

LOCKED = "failed to acquire upgrade lock"
"""Talos' answer to an Upgrade while a control plane upgrades (this one, if Arges stopped
before recording its confirmation): not a failure; the step is followed by what the member
shows."""


def member_config(pool_config: str, server_class: ServerClass | None, server: Server) -> str:
    """A member's whole config: its pool's rendering, then the ServerClass's patches, then
    the Server's (as :func:`arges.metadata.service.sources_of` orders them for /configdata).

    Raises:
        TalosError: a patch that does not parse or apply, naming it.
    """
    sets: list[PatchSet] = []
    if server_class is not None:
        sets.append(
            patch_set(
                f"ServerClass {server_class.name}",
                [p.to_json() for p in server_class.spec.config_patches or []],
                list(server_class.spec.strategic_patches or []),
            )
        )
    sets.append(
        patch_set(
            f"Server {server.name}",
            [p.to_json() for p in server.spec.config_patches or []],
            list(server.spec.strategic_patches or []),
        )
    )
    return apply_text(pool_config, sets)


@dataclass(frozen=True)
class Wanted:
    """What every member should run: the installer image and its Talos version, and the
    Kubernetes version."""

    installer: str
    talos_version: str
    kubernetes_version: str


@dataclass
class Member:
    """One member as the roll-out works on it: its view and binding, the address of its
    Talos API, the latest observation, its config Secret as stored (None: not written yet),
    its whole config (None when it does not render: ``problem`` says why), and the Talos
    version it last reported."""

    view: MemberView
    binding: ServerBinding
    address: str | None
    observation: Observation
    secret: dict[str, Any] | None
    config: str | None
    problem: str | None
    version: str | None

    @property
    def uid(self) -> str:
        """Its binding's uid: the membership (a new binding is a new member)."""
        return str(self.binding.metadata.get("uid") or self.view.server)

    @property
    def applied(self) -> str | None:
        """The config Arges last applied to it (None: none yet)."""
        return text(self.secret, APPLIED_KEY) if self.secret is not None else None

    @property
    def step(self) -> Step | None:
        """Its recorded roll-out step (None: none)."""
        return Step.from_text(record_of(self.secret).step) if self.secret is not None else None


@dataclass
class Summary:
    """The roll-out as the status shows it: whether every member is up to date, each
    member's state and message, and the decision made."""

    up_to_date: bool
    states: dict[str, tuple[RolloutState, str | None]] = field(default_factory=dict)
    decision: Decision = field(default_factory=lambda: Decision(None))


def _same(a: str | None, b: str | None) -> bool:
    """Whether two configs hold the same documents (formatting aside)."""
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    try:
        return decode(a) == decode(b)
    except TalosError:
        return a == b


class Rollouts:
    """Rolls members forward (see the module docstring); remembers dry-run answers."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        # Per cluster (its uid), per member uid and config digest: whether applying reboots.
        self._reboots: dict[str, dict[tuple[str, str], bool]] = {}

    def forget(self, cluster: TalosCluster) -> None:
        """Drop what is remembered about a deleted cluster."""
        self._reboots.pop(str(cluster.metadata.get("uid") or cluster.name), None)

    async def roll(
        self,
        state: Round,
        talos: Talos,
        members: list[Member],
        wanted: Wanted,
        *,
        bootstrapped: bool,
    ) -> Summary:
        """One round of the roll-out; what the status shows."""
        spec = state.cluster.spec
        timeout = dt.timedelta(seconds=spec.rollout_timeout_seconds)
        # Answers for members that left (or renderings they no longer have) are not asked again.
        current = {m.uid for m in members}
        cluster = str(state.cluster.metadata.get("uid") or state.cluster.name)
        known = self._reboots.get(cluster, {})
        self._reboots[cluster] = {k: v for k, v in known.items() if k[0] in current}
        rollouts = []
        for member in members:
            if member.secret is not None and member.step is not None:
                await self._follow(state, talos, member, wanted, timeout)
            rollouts.append(await self._view(talos, member, wanted, self._reboots[cluster]))
        if not bootstrapped:
            waiting = Decision(None, waiting="the roll-out starts once etcd is bootstrapped")
            return self._summary(rollouts, waiting, members)
        pools = {w.name: w.max_unavailable for w in spec.workers or []}
        decision = plan(rollouts, paused=spec.paused, etcd_problem=None, max_unavailable=pools)
        by_name = {m.view.server: m for m in members}
        if any(by_name[s].view.role == "controlplane" for s in decision.start):
            control_planes = {
                m.view.server: m.address
                for m in members
                if m.view.role == "controlplane" and m.address and m.observation.answers
            }
            problem = await etcd_problem(talos, control_planes)
            if problem is not None:
                decision = plan(
                    rollouts, paused=spec.paused, etcd_problem=problem, max_unavailable=pools
                )
        for name in decision.start:
            assert decision.stage is not None
            await self._start(state, talos, by_name[name], decision.stage, wanted)
        if decision.start or any(r.busy for r in rollouts):
            state.requeue = True
        return self._summary(rollouts, decision, members)

    async def _view(
        self, talos: Talos, member: Member, wanted: Wanted, known: dict[tuple[str, str], bool]
    ) -> MemberRollout:
        view = member.view
        healthy = member.observation.healthy(etcd=view.role == "controlplane")
        if member.config is None or member.secret is None or not view.installed:
            return MemberRollout(view.server, view.pool, view.role, healthy)
        applied = member.applied
        stages = pending(
            version=member.version,
            wanted_version=wanted.talos_version,
            applied=None if applied is None else _stage_images(applied),
            wanted=_stage_images(member.config),
            config_current=applied is not None and _same(applied, member.config),
        )
        reboots = False
        if "config" in stages and member.step is None:
            reboots = await self._dry_run(talos, member, known)
        return MemberRollout(
            view.server, view.pool, view.role, healthy, stages, member.step, reboots
        )

    async def _dry_run(
        self, talos: Talos, member: Member, known: dict[tuple[str, str], bool]
    ) -> bool:
        """Whether applying the member's config reboots it (unknown counts as yes); Talos'
        answers are kept in ``known``."""
        assert member.config is not None
        key = (member.uid, digest(member.config))
        if key in known:
            return known[key]
        if member.address is None or not member.observation.answers:
            return True
        try:
            result = await talos.api.apply_configuration(
                member.address, talos.port, config=member.config, mode="auto", dry_run=True
            )
        except TalosApiError:
            return True
        known[key] = result.mode == "reboot"
        return known[key]

    async def _follow(
        self, state: Round, talos: Talos, member: Member, wanted: Wanted, limit: dt.timedelta
    ) -> None:
        """Check the member's recorded step and act on where it is."""
        step = member.step
        assert step is not None and member.secret is not None
        if step.failed:
            if _target(step.stage, member, wanted) != step.target:
                # The spec changed what the member should run: the failure is history.
                member.secret = await _record(state, member, None)
            return
        seen = member.observation
        where = progress(
            step,
            answers=seen.answers,
            boot_time=seen.boot_time,
            version=seen.version,
            healthy=seen.healthy(etcd=member.view.role == "controlplane"),
            wanted_version=tag(step.target) if step.stage == "talos" else None,
            now=state.now,
            timeout=limit,
        )
        if where == "waiting":
            state.requeue = True
        elif where == "done":
            log.info(
                "%s/%s: %s: %s done",
                state.cluster.namespace,
                state.cluster.name,
                member.view.server,
                step.stage,
            )
            member.secret = await _record(state, member, None)
        elif where == "resend":
            await self._send(state, talos, member, step, wanted)
        else:
            await self._fail(state, member, step, where)

    async def _start(
        self, state: Round, talos: Talos, member: Member, stage: Stage, wanted: Wanted
    ) -> None:
        """Record a new step on the member, then send it."""
        target = _target(stage, member, wanted)
        if target is None:
            return
        step = Step(stage, target, member.observation.boot_time or 0, state.now)
        try:
            member.secret = await _record(state, member, step)
        except Conflict:
            # Another writer changed the Secret since it was read: look again next round.
            state.requeue = True
            return
        await self._send(state, talos, member, step, wanted)

    async def _send(
        self, state: Round, talos: Talos, member: Member, step: Step, wanted: Wanted
    ) -> None:
        """Send the step's call; record Talos' confirmation, or the failure."""
        address = member.address
        if address is None:
            return
        applied: str | None = None
        try:
            if step.stage == "talos":
                try:
                    await talos.api.upgrade(address, talos.port, image=step.target)
                except RequestFailed as exc:
                    if LOCKED not in exc.message:
                        raise
                    state.requeue = True
                    return
                confirmed = step.confirmed(reboots=True)
                what = f"upgrading to Talos {tag(step.target)} ({step.target})"
            elif step.stage in KUBERNETES_STAGES:
                running = member.applied or member.config
                assert running is not None
                applied = with_image(running, cast(Component, step.stage), step.target)
                await talos.api.apply_configuration(
                    address, talos.port, config=applied, mode="no-reboot"
                )
                confirmed = step.confirmed(reboots=False)
                what = f"{step.stage} to {tag(step.target) or step.target}"
            else:
                applied = member.config
                assert applied is not None
                result = await talos.api.apply_configuration(
                    address, talos.port, config=applied, mode="auto"
                )
                confirmed = step.confirmed(reboots=result.mode == "reboot")
                what = "its config applied" + (", rebooting" if confirmed.reboots else " in place")
        except RequestFailed as exc:
            await self._fail(state, member, step, f"Talos refused {step.stage}: {exc.message}")
            return
        except TalosApiError as exc:
            log.info(
                "%s/%s: %s: %s not sent yet: %s",
                state.cluster.namespace,
                state.cluster.name,
                member.view.server,
                step.stage,
                exc,
            )
            state.requeue = True
            return
        member.secret = await _record(state, member, confirmed, applied=applied)
        self.observer.forget(member.uid)
        state.requeue = True
        log.info(
            "%s/%s: %s: %s", state.cluster.namespace, state.cluster.name, member.view.server, what
        )
        await state.event("RollingOut", f"{member.view.server}: {what}")

    async def _fail(self, state: Round, member: Member, step: Step, why: str) -> None:
        member.secret = await _record(state, member, step.failing(why))
        log.warning(
            "%s/%s: %s: %s failed: %s",
            state.cluster.namespace,
            state.cluster.name,
            member.view.server,
            step.stage,
            why,
        )
        await state.event(
            "RolloutFailed", f"{member.view.server} ({step.stage}): {why}", warning=True
        )

    def _summary(
        self, rollouts: list[MemberRollout], decision: Decision, members: list[Member]
    ) -> Summary:
        states: dict[str, tuple[RolloutState, str | None]] = {}
        problems = {m.view.server: m.problem for m in members if m.problem}
        for r in rollouts:
            step = r.step
            if r.server in problems:
                states[r.server] = ("Pending", f"its config does not render: {problems[r.server]}")
            elif step is not None and step.failed:
                states[r.server] = ("Failed", f"{step.stage}: {step.failed}")
            elif step is not None:
                states[r.server] = ("InProgress", _doing(step))
            elif r.pending:
                waiting = f"; {decision.waiting}" if decision.waiting else ""
                states[r.server] = ("Pending", f"needs {', '.join(r.pending)}{waiting}")
            else:
                states[r.server] = ("UpToDate", None)
        done = all(s == "UpToDate" for s, _ in states.values())
        return Summary(done and not problems, states, decision)


def _doing(step: Step) -> str:
    if step.stage == "talos":
        return f"upgrading to Talos {tag(step.target)}"
    if step.stage == "config":
        return "applying its config" + (" (rebooting)" if step.reboots else "")
    return f"{step.stage}: {tag(step.target) or step.target}"


def _target(stage: Stage, member: Member, wanted: Wanted) -> str | None:
    """What a step of ``stage`` brings the member to: the installer image, the component's
    image, or the digest of the member's whole config."""
    if stage == "talos":
        return wanted.installer
    if member.config is None:
        return None
    if stage == "config":
        return digest(member.config)
    return image(member.config, stage)


async def _record(
    state: Round, member: Member, step: Step | None, *, applied: str | None = None
) -> dict[str, Any] | None:
    assert member.secret is not None
    try:
        return await record_step(state.kube, member.secret, step, applied=applied)
    except NotFound:
        return None


def up_to_date_condition(state: Round, summary: Summary, wanted: Wanted) -> None:
    """Condition ``UpToDate`` from the round's summary."""
    decision = summary.decision
    if summary.up_to_date:
        state.set(
            UP_TO_DATE,
            "True",
            "UpToDate",
            f"every member runs Talos {wanted.talos_version}, Kubernetes "
            f"{wanted.kubernetes_version} and its current config",
        )
    elif decision.failed:
        state.set(UP_TO_DATE, "False", "MemberFailed", f"the roll-out stopped: {decision.failed}")
    elif state.cluster.spec.paused:
        state.set(UP_TO_DATE, "False", "Paused", decision.waiting or "spec.paused is set")
    elif decision.stage is None:
        state.set(UP_TO_DATE, "False", "Provisioning", "members are not all installed yet")
    else:
        busy = [s for s, (r, _) in summary.states.items() if r == "InProgress"]
        doing = f"in progress on {', '.join(busy)}" if busy else "starting"
        waiting = f"; {decision.waiting}" if decision.waiting else ""
        state.set(UP_TO_DATE, "False", "RollingOut", f"stage {decision.stage}: {doing}{waiting}")


def _stage_images(config: str) -> dict[str, str | None]:
    """The image of each Kubernetes stage under ``config`` (its images looked up once)."""
    found = images(config)
    return {s: found[cast(Component, s)] for s in KUBERNETES_STAGES}
