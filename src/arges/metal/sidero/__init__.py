"""Sidero Metal's objects translated into Arges' (what ``arges import sidero`` writes), as
pure functions.

Input (:class:`~arges.metal.sidero.base.SideroState`): the objects as a Sidero management
cluster serves them, ``metal.sidero.dev`` Servers, ServerClasses and Environments in v1alpha2's
or v1alpha1's shape, CAPS' (``infrastructure.cluster.x-k8s.io/v1alpha3``) ServerBindings and
MetalMachines, and the BMC credentials the Servers' ``userFrom``/``passFrom`` name. Field
meanings follow Sidero's CRD field docs and ``reference/sidero.md`` §1-§5.

Output (:func:`translate`): the Arges objects to write, in order, and one note for everything
that could not be carried as it was; then :func:`arges.metal.sidero.plan.plan` decides, from
what Arges already holds, which writes to make. The parts:

- :mod:`~arges.metal.sidero.servers`: Servers, their BMCs, and bound servers' ServerBindings;
- :mod:`~arges.metal.sidero.inventory`: inventories and hardware qualifiers, in Arges' units;
- :mod:`~arges.metal.sidero.classes`: ServerClasses and Environments.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from arges.metal.sidero import classes, servers
from arges.metal.sidero.base import (
    Note,
    SideroState,
    Translated,
    Translation,
    meta_of,
    name_of,
    spec_of,
)


def translate(state: SideroState, *, now: dt.datetime) -> Translation:
    """Sidero's objects as Arges objects: Secrets, Environments, ServerClasses,
    ServerBindings, then Servers (a Server comes after its binding, so it is never seen
    unbound). ``now`` stamps the conditions it writes.

    Never raises on malformed input: what cannot be translated becomes a
    :class:`~arges.metal.sidero.base.Note`.
    """
    notes: list[Note] = []
    bindings = {name_of(b): b for b in state.bindings if name_of(b)}
    machines = {(str(meta_of(m).get("namespace")), name_of(m)): m for m in state.metal_machines}
    by_name = {name_of(s): s for s in state.servers if name_of(s)}
    secrets: list[Translated] = []
    bound: list[Translated] = []
    translated: list[Translated] = []
    dropped: Counter[str] = Counter()
    for name, obj in sorted(by_name.items()):
        binding = bindings.get(name)
        if binding is not None:
            installed = servers.installed(obj, binding)
            bound.append(servers.binding(name, binding, machines, installed, notes, now))
        secret, bmc = servers.bmc(name, spec_of(obj).get("bmc"), state.secrets, notes)
        if secret is not None:
            secrets.append(secret)
        server, fields = servers.server(name, obj, binding, bmc, notes, now)
        translated.append(server)
        dropped.update(fields)
    for name in sorted(set(bindings) - set(by_name)):
        notes.append(Note(f"ServerBinding {name}", "not imported: no Server of that name"))
    for field, count in sorted(dropped.items()):
        notes.append(
            Note(
                "Server inventories",
                f"{field} not carried ({count} servers): Arges' inventory has no such field "
                "(the agent reports its own inventory at its next registration)",
            )
        )
    environments = [
        e
        for obj in sorted(state.environments, key=name_of)
        if (e := classes.environment(obj, notes)) is not None
    ]
    server_classes = [
        c
        for obj in sorted(state.server_classes, key=name_of)
        if (c := classes.server_class(obj, notes)) is not None
    ]
    notes += classes.membership_differences(
        state.server_classes, server_classes, translated, {b.name for b in bound}
    )
    return Translation([*secrets, *environments, *server_classes, *bound, *translated], notes)
