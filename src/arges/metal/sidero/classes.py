"""Sidero's ServerClasses and Environments in Arges' shapes, and a check that the classes
keep their members.

A ServerClass keeps its selector, qualifiers (hardware, in Arges' units, and Sidero's
``labelSelectors``), environment, patches and boot-from-disk method; the built-in ``any``
class's qualifiers are not carried (Sidero and Arges both keep none). An Environment keeps its
kernel and initrd URLs, sha512s and arguments, except the arguments that point at Sidero's own
services (Arges adds its own ``talos.config=`` and runs no SideroLink); one named ``agent`` is
never imported (the name is Arges' discovery image).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from arges.api.environment import AGENT_ENVIRONMENT
from arges.api.server import Server
from arges.api.serverclass import ANY_CLASS, ServerClass
from arges.metal.classes import QualifierError, compile_class, members
from arges.metal.sidero.base import (
    Note,
    Translated,
    as_dict,
    common_spec,
    imported_labels,
    name_of,
    spec_of,
    status_of,
)
from arges.metal.sidero.inventory import qualifiers

SIDERO_ARGS = {
    "talos.config": "Arges adds its own talos.config= pointing at its metadata service",
    "siderolink.api": "Arges runs no SideroLink",
    "talos.logging.kernel": "it streams kernel logs to Sidero's SideroLink log receiver",
    "talos.events.sink": "it sends Talos events to Sidero's SideroLink events sink",
}
"""Kernel arguments that point at Sidero's own services, and why they are not carried."""


def environment(obj: dict[str, Any], notes: list[Note]) -> Translated | None:
    """The Arges Environment for Sidero's ``obj``, or None (with a note) when there is
    none to make."""
    name = name_of(obj)
    subject = f"Environment {name}"
    if name == AGENT_ENVIRONMENT:
        notes.append(Note(subject, "not imported: the name is Arges' discovery image"))
        return None
    spec = spec_of(obj)
    kernel, initrd = as_dict(spec.get("kernel")), as_dict(spec.get("initrd"))
    if not kernel.get("url") or not initrd.get("url"):
        notes.append(Note(subject, "not imported: it has no kernel or no initrd URL"))
        return None
    args: list[str] = []
    raw = kernel.get("args")
    for arg in raw if isinstance(raw, list) else []:
        key = str(arg).split("=", 1)[0]
        if key in SIDERO_ARGS:
            notes.append(Note(subject, f"kernel argument {key}= dropped: {SIDERO_ARGS[key]}"))
        else:
            args.append(str(arg))
    out_kernel: dict[str, Any] = {"url": str(kernel["url"])}
    out_initrd: dict[str, Any] = {"url": str(initrd["url"])}
    for source, target in ((kernel, out_kernel), (initrd, out_initrd)):
        if source.get("sha512"):
            target["sha512"] = str(source["sha512"]).lower()
    if args:
        out_kernel["args"] = args
    body = {
        "metadata": {"name": name, "labels": imported_labels(obj)},
        "spec": {"kernel": out_kernel, "initrd": out_initrd},
    }
    checked = "sha512 checked" if "sha512" in out_kernel else "no sha512"
    return Translated("Environment", name, body, f"kernel {kernel['url']}, {checked}")


def server_class(obj: dict[str, Any], notes: list[Note]) -> Translated | None:
    """The Arges ServerClass for Sidero's ``obj``, or None (with a note) when none of its
    hardware qualifiers could match a server in Arges."""
    name = name_of(obj)
    subject = f"ServerClass {name}"
    spec = spec_of(obj)
    out: dict[str, Any] = {}
    if as_dict(spec.get("selector")):
        out["selector"] = spec["selector"]
    raw = as_dict(spec.get("qualifiers"))
    words = ["selector"] if out else []
    if name != ANY_CLASS:
        hardware, problems = qualifiers(
            raw.get("hardware"), raw.get("cpu"), raw.get("systemInformation")
        )
        notes += [Note(subject, p) for p in problems]
        if problems and not hardware:
            notes.append(
                Note(subject, "not imported: none of its hardware qualifiers can match in Arges")
            )
            return None
        found: dict[str, Any] = {}
        if hardware:
            found["hardware"] = hardware
            words.append(f"{len(hardware)} hardware qualifier{'s' * (len(hardware) != 1)}")
        selectors = raw.get("labelSelectors")
        selectors = [as_dict(s) for s in selectors] if isinstance(selectors, list) else []
        if selectors:
            found["labelSelectors"] = selectors
            words.append("label selectors")
        if found:
            out["qualifiers"] = found
    out.update(common_spec(subject, spec, notes))
    body = {"metadata": {"name": name, "labels": imported_labels(obj)}, "spec": out}
    try:
        compile_class(ServerClass.from_json(body))
    except (QualifierError, ValidationError) as exc:
        notes.append(Note(subject, f"imported, but Arges cannot use it: {exc}"))
    return Translated("ServerClass", name, body, ", ".join(words) or "every accepted server")


def membership_differences(
    sidero_classes: list[dict[str, Any]],
    classes: list[Translated],
    servers: list[Translated],
    bound: set[str],
) -> list[Note]:
    """Where the imported classes' members, as Arges computes them from the imported
    servers (``bound`` naming those with a binding), differ from what each class's status
    showed in Sidero."""
    arges_servers = [Server.from_json({**s.body, "status": s.status or {}}) for s in servers]
    shown = {name_of(c): status_of(c) for c in sidero_classes}
    notes = []
    for translated in classes:
        status = shown.get(translated.name) or {}
        if "serversAvailable" not in status and "serversInUse" not in status:
            continue
        try:
            compiled = compile_class(ServerClass.from_json(translated.body))
        except (QualifierError, ValidationError):
            continue
        available, in_use = members(compiled, arges_servers, bound)
        theirs = set()
        for key in ("serversAvailable", "serversInUse"):
            listed = status.get(key)
            theirs |= {str(n) for n in listed} if isinstance(listed, list) else set()
        ours = set(available) | set(in_use)
        if theirs != ours:
            parts = [f"also {', '.join(sorted(ours - theirs))}"] if ours - theirs else []
            parts += [f"not {', '.join(sorted(theirs - ours))}"] if theirs - ours else []
            notes.append(
                Note(
                    f"ServerClass {translated.name}",
                    f"members differ from what Sidero shows: in Arges {'; '.join(parts)}",
                )
            )
    return notes
