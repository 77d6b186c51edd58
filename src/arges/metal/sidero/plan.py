"""What an import writes, given what the Arges API already holds: a pure plan of steps.

Imported objects carry the label ``metal.arges.dev/imported-from: sidero`` and the annotation
``metal.arges.dev/import``: ``pending`` while the import is writing them, ``done`` once it has
finished with them. Per translated object (:class:`arges.metal.sidero.base.Translated`):

- absent: created. A ServerBinding or Server takes three writes (created ``pending``, its
  status, then its last fields and ``done``); a Server's BMC comes last, so nothing powers it
  before its status says whether it is clean or bound;
- imported and ``done``: unchanged, whatever it became since (Arges owns it now), so running
  the import again writes nothing;
- imported and ``pending``: the remaining writes (an interrupted import completes);
- a built-in Arges made and nobody changed (the Environment ``default`` still annotated
  ``metal.arges.dev/built-in``; the ServerClass ``any`` with an empty spec): unchanged when
  Sidero's is the same, else taken over with Sidero's spec;
- a Secret with the same credentials: unchanged;
- anything else already there: left as is (a line says so); a Server left as is keeps its
  ServerBinding from being written, and a Secret left as is its Server's BMC.

On a real Sidero cluster the MetalMachines are not in Arges yet when it is a separate API
(``clusterctl move`` brings them later): a binding then names its MetalMachine without a uid,
and the MetalMachine adopts it when it arrives. When the MetalMachine is already there, its
uid is written at once.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from arges.api.environment import BUILT_IN, DEFAULT_ENVIRONMENT
from arges.api.serverclass import ANY_CLASS
from arges.metal.capi import CONSUMER_UID_LABEL
from arges.metal.sidero.base import (
    IMPORTED_FROM,
    IMPORTED_LABEL,
    Note,
    Translated,
    Translation,
    bmc_secret_name,
    meta_of,
)

IMPORT_STATE = "metal.arges.dev/import"
"""Annotation on imported objects: ``pending`` while being written, then ``done``."""
PENDING, DONE = "pending", "done"
Verb = Literal["create", "status", "patch", "replace"]
Action = Literal["create", "complete", "unchanged", "take over", "leave"]
_MULTI_STEP = ("ServerBinding", "Server")


@dataclass(frozen=True)
class Step:
    """One write: ``create`` a new object, merge-patch its ``status`` subresource, merge-
    ``patch`` it, or ``replace`` it (the body carries the resourceVersion it was read at)."""

    verb: Verb
    kind: str
    name: str
    body: dict[str, Any]
    namespace: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What becomes of one translated object, for the report."""

    subject: str
    action: Action
    summary: str


@dataclass(frozen=True)
class Target:
    """What the Arges API holds: ``objects`` by (kind, namespace or "", name) as the API
    returned them (Secrets with their ``data``), and the uids of its MetalMachines by
    (namespace, name)."""

    objects: Mapping[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    metal_machines: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def get(self, obj: Translated) -> dict[str, Any] | None:
        """What Arges holds under ``obj``'s kind, namespace and name, if anything."""
        return self.objects.get((obj.kind, obj.namespace or "", obj.name))


@dataclass(frozen=True)
class Plan:
    """The writes in order, one outcome per translated object, and the notes (the
    translation's and the plan's)."""

    steps: list[Step]
    outcomes: list[Outcome]
    notes: list[Note]


def _state(existing: dict[str, Any]) -> str | None:
    """``pending`` or ``done`` for an object an import wrote, None for any other."""
    meta = meta_of(existing)
    if (meta.get("labels") or {}).get(IMPORTED_LABEL) != IMPORTED_FROM:
        return None
    state = (meta.get("annotations") or {}).get(IMPORT_STATE)
    return PENDING if state == PENDING else DONE


def _secret_data(secret: dict[str, Any]) -> dict[str, str] | None:
    try:
        return {
            str(k): base64.b64decode(str(v), validate=True).decode()
            for k, v in (secret.get("data") or {}).items()
        }
    except (binascii.Error, UnicodeDecodeError):
        return None


def _untouched_built_in(obj: Translated, existing: dict[str, Any]) -> bool:
    """Whether ``existing`` is a built-in Arges made that nobody has changed."""
    if obj.kind == "Environment" and obj.name == DEFAULT_ENVIRONMENT:
        return (meta_of(existing).get("annotations") or {}).get(BUILT_IN) == "true"
    if obj.kind == "ServerClass" and obj.name == ANY_CLASS:
        spec = {k: v for k, v in (existing.get("spec") or {}).items() if k != "qualifiers"}
        return not any(spec.values())
    return False


def _with_state(body: dict[str, Any], state: str, **extra_labels: str) -> dict[str, Any]:
    meta = dict(body["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), IMPORT_STATE: state}
    if extra_labels:
        meta["labels"] = {**(meta.get("labels") or {}), **extra_labels}
    return {**body, "metadata": meta}


def plan(translation: Translation, target: Target) -> Plan:
    """The writes that bring ``target`` to hold ``translation`` (see the module docstring)."""
    steps: list[Step] = []
    outcomes: list[Outcome] = []
    notes = list(translation.notes)
    refused_secrets: set[str] = set()
    kept_servers = {
        o.name
        for o in translation.objects
        if o.kind == "Server"
        and (existing := target.get(o)) is not None
        and _state(existing) is None
    }
    kept_secrets = {bmc_secret_name(name) for name in kept_servers}
    for obj in translation.objects:
        existing = target.get(obj)
        if (obj.kind == "ServerBinding" and obj.name in kept_servers) or (
            obj.kind == "Secret" and obj.name in kept_secrets
        ):
            outcomes.append(
                Outcome(obj.subject, "leave", "not written: its Server exists in Arges already")
            )
            continue
        if obj.kind == "Server" and obj.last is not None:
            bmc = obj.last["bmc"]
            ref = bmc["credentialsSecretRef"]["name"]
            if ref in refused_secrets:
                notes.append(
                    Note(
                        obj.subject,
                        f"BMC not carried: Secret default/{ref} holds other credentials in "
                        "Arges (left as is)",
                    )
                )
                summary = obj.summary.replace(f", BMC {bmc['address']}:{bmc['port']}", "")
                obj = Translated(obj.kind, obj.name, obj.body, summary, status=obj.status)
        if existing is None:
            steps += _create(obj, target)
            outcomes.append(Outcome(obj.subject, "create", obj.summary))
            continue
        state = _state(existing)
        if state == DONE:
            outcomes.append(Outcome(obj.subject, "unchanged", "imported before"))
        elif state == PENDING:
            steps += _finish(obj, existing)
            outcomes.append(Outcome(obj.subject, "complete", obj.summary))
        elif _untouched_built_in(obj, existing):
            if (existing.get("spec") or {}) == obj.body["spec"]:
                outcomes.append(Outcome(obj.subject, "unchanged", "the same as Arges' built-in"))
            else:
                steps.append(_take_over(obj, existing))
                outcomes.append(
                    Outcome(
                        obj.subject,
                        "take over",
                        f"Sidero's replaces Arges' built-in: {obj.summary}",
                    )
                )
        elif obj.kind == "Secret" and _secret_data(existing) == obj.body["stringData"]:
            outcomes.append(Outcome(obj.subject, "unchanged", "the same credentials"))
        else:
            if obj.kind == "Secret":
                refused_secrets.add(obj.name)
            outcomes.append(
                Outcome(obj.subject, "leave", "exists in Arges and was not imported: left as is")
            )
    return Plan(steps, outcomes, notes)


def _create(obj: Translated, target: Target) -> list[Step]:
    body = obj.body
    if obj.kind == "ServerBinding":
        consumer = body["spec"]["consumerRef"]
        uid = target.metal_machines.get((consumer["namespace"], consumer["name"]))
        if uid is not None:
            spec = {**body["spec"], "consumerRef": {**consumer, "uid": uid}}
            body = _with_state({**body, "spec": spec}, PENDING, **{CONSUMER_UID_LABEL: uid})
    if obj.kind not in _MULTI_STEP:
        return [Step("create", obj.kind, obj.name, _with_state(body, DONE), obj.namespace)]
    first = Step("create", obj.kind, obj.name, _with_state(body, PENDING), obj.namespace)
    return [first, *_finish(obj, None)]


def _finish(obj: Translated, existing: dict[str, Any] | None) -> list[Step]:
    """The writes after the create: the status (keeping conditions others wrote), then the
    last fields and ``done``."""
    steps = []
    if obj.status is not None:
        status = dict(obj.status)
        ours = {c["type"] for c in status.get("conditions") or []}
        kept = [
            c
            for c in ((existing or {}).get("status") or {}).get("conditions") or []
            if c.get("type") not in ours
        ]
        if "conditions" in status or kept:
            status["conditions"] = [*kept, *(status.get("conditions") or [])]
        steps.append(Step("status", obj.kind, obj.name, {"status": status}, obj.namespace))
    done: dict[str, Any] = {"metadata": {"annotations": {IMPORT_STATE: DONE}}}
    if obj.last is not None:
        done["spec"] = obj.last
    steps.append(Step("patch", obj.kind, obj.name, done, obj.namespace))
    return steps


def _take_over(obj: Translated, existing: dict[str, Any]) -> Step:
    meta = dict(meta_of(existing))
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != BUILT_IN}
    meta["annotations"] = {**annotations, IMPORT_STATE: DONE}
    meta["labels"] = {**(meta.get("labels") or {}), IMPORTED_LABEL: IMPORTED_FROM}
    body = {**existing, "metadata": meta, "spec": obj.body["spec"]}
    return Step("replace", obj.kind, obj.name, body, obj.namespace)
