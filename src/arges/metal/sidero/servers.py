"""Sidero's Servers, their BMCs and CAPS' ServerBindings in Arges' shapes.

A Server keeps its name (the SMBIOS UUID), labels, ``accepted``, ``cordoned``,
``pxeBootAlways``, ``bootFromDiskMethod``, ``environmentRef``, config and strategic patches;
its inventory moves to ``status.hardware`` (:mod:`arges.metal.sidero.inventory`), ``isClean``
and ``power`` carry over. Its BMC keeps endpoint and port, and the username and password
(literal in Sidero's spec, or from ``userFrom``/``passFrom``) go into a Secret
``default/bmc-<server>`` with keys ``username`` and ``password``, as Arges' BMCs read them.

A bound server (a CAPS ServerBinding names it) gets an Arges ServerBinding of the same name,
whose consumer is the same MetalMachine, with the release finalizer every binding carries
(:data:`arges.api.binding.RELEASE_FINALIZER`). When Sidero had seen it installed (Server
condition ``PXEBooted``, set once Talos reported its install, or the binding's
``TalosInstalled``), the binding gets ``ConfigDelivered`` and ``Installed`` and the Server a
``PXEBooted`` record of a disk boot: :func:`arges.metal.boot.decide` then tells its next
network boot to boot from its disk, and :func:`arges.metal.power.intent` keeps it on; nothing
wipes or reinstalls it. Its addresses and hostname are those Talos reported to Sidero through
the binding, which are what the Machine shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from arges.api.base import Condition
from arges.api.binding import CONFIG_DELIVERED, INSTALLED, RELEASE_FINALIZER
from arges.api.infrastructure import INFRASTRUCTURE_GROUP, INFRASTRUCTURE_VERSION
from arges.metal.capi import CLUSTER_NAME_LABEL, CONTROL_PLANE_LABEL
from arges.metal.sidero.base import (
    BMC_SECRET_NAMESPACE,
    IMPORTED_FROM,
    IMPORTED_LABEL,
    Note,
    Translated,
    as_dict,
    as_list,
    bmc_secret_name,
    common_spec,
    condition_true,
    imported_labels,
    labels_of,
    spec_of,
    status_of,
)
from arges.metal.sidero.inventory import inventory
from arges.metal.stage import PXE_BOOTED, BootReason

TALOS_INSTALLED = "TalosInstalled"
"""CAPS' ServerBinding condition: Talos reported its installation done."""
ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname")


def installed(server: dict[str, Any], binding: dict[str, Any] | None) -> bool:
    """Whether Sidero had seen a bound server installed."""
    return binding is not None and (
        condition_true(server, PXE_BOOTED) or condition_true(binding, TALOS_INSTALLED)
    )


def server(
    name: str,
    obj: dict[str, Any],
    binding: dict[str, Any] | None,
    bmc: dict[str, Any] | None,
    notes: list[Note],
    now: dt.datetime,
) -> tuple[Translated, set[str]]:
    """The Arges Server for Sidero's ``obj`` (bound by ``binding``, with the BMC
    :func:`bmc` made), and the inventory fields it had that Arges does not record."""
    subject = f"Server {name}"
    spec, status = spec_of(obj), status_of(obj)
    accepted = spec.get("accepted") is True
    out: dict[str, Any] = {
        "accepted": accepted,
        "cordoned": spec.get("cordoned") is True,
        "pxeBootAlways": spec.get("pxeBootAlways") is True,
        **common_spec(subject, spec, notes),
    }
    if spec.get("managementApi"):
        notes.append(
            Note(
                subject,
                "spec.managementApi not carried: it is Sidero's HTTP power API for test rigs, "
                "which Arges has no driver for",
            )
        )
    if spec.get("pxeMode"):
        notes.append(
            Note(
                subject,
                f"spec.pxeMode {spec['pxeMode']} not carried: Arges asks the BMC for a network "
                "boot without choosing BIOS or UEFI",
            )
        )
    hardware, dropped = inventory(spec)
    clean = binding is None and accepted and status.get("isClean") is True
    new_status: dict[str, Any] = {"inUse": binding is not None, "isClean": clean}
    if hardware is not None:
        new_status["hardware"] = hardware
    bound = spec_of(binding) if binding is not None else {}
    hostname = bound.get("hostname") or spec.get("hostname")
    if isinstance(hostname, str) and hostname:
        new_status["hostname"] = hostname
    reported = bound.get("addresses")
    addresses = [
        {"type": "InternalIP", "address": a}
        for a in (reported if isinstance(reported, list) else [])
        if isinstance(a, str)
    ] or [
        {"type": a["type"], "address": a["address"]}
        for a in as_list(status.get("addresses"))
        if a.get("type") in ADDRESS_TYPES and isinstance(a.get("address"), str)
    ]
    if addresses:
        new_status["addresses"] = addresses
    if status.get("power") in ("on", "off", "unknown"):
        new_status["power"] = status["power"]
    if installed(obj, binding):
        record = Condition(
            type=PXE_BOOTED,
            status="True",
            reason=BootReason.DISK,
            message="imported from Sidero, where it was installed: it boots from its disk",
            last_transition_time=now.replace(microsecond=0),
        )
        new_status["conditions"] = [record.to_json()]
    elif accepted and binding is None and not clean:
        notes.append(
            Note(subject, "accepted and not clean in Sidero: Arges wipes it, as Sidero would")
        )
    body = {"metadata": {"name": name, "labels": imported_labels(obj)}, "spec": out}
    words = [
        "accepted" if accepted else "not accepted",
        "bound" if binding is not None else "clean" if clean else "not clean",
    ]
    if out["cordoned"]:
        words.append("cordoned")
    if bmc is not None:
        words.append(f"BMC {bmc['address']}:{bmc['port']}")
    translated = Translated(
        "Server",
        name,
        body,
        ", ".join(words),
        status=new_status,
        last={"bmc": bmc} if bmc is not None else None,
    )
    return translated, dropped


def bmc(
    name: str,
    raw: Any,
    secrets: Mapping[tuple[str, str], Mapping[str, str]],
    notes: list[Note],
) -> tuple[Translated | None, dict[str, Any] | None]:
    """Server ``name``'s BMC in Arges' form and the Secret with its credentials, or
    (None, None) with a note saying why it cannot be carried."""
    found = as_dict(raw)
    if not found.get("endpoint"):
        return None, None
    subject, endpoint = f"Server {name}", str(found["endpoint"])
    interface = str(found.get("interface") or "lanplus")
    if interface not in ("lanplus", "lan"):
        notes.append(
            Note(
                subject,
                f"BMC {endpoint} not carried: interface {interface!r} is not IPMI over the LAN, "
                "the only way Arges reaches BMCs",
            )
        )
        return None, None
    credentials: dict[str, str] = {}
    for key, literal, source in (
        ("username", "user", "userFrom"),
        ("password", "pass", "passFrom"),
    ):
        value = found.get(literal)
        if isinstance(value, str) and value:
            credentials[key] = value
            continue
        ref = as_dict(as_dict(found.get(source)).get("secretKeyRef"))
        if not ref.get("name"):
            why = f"it has no {literal} (Sidero drove such a BMC as no BMC)"
        else:
            where = (str(ref.get("namespace") or "default"), str(ref["name"]))
            value = (secrets.get(where) or {}).get(str(ref.get("key") or ""))
            if value:
                credentials[key] = value
                continue
            why = (
                f"its {source} names key {ref.get('key')!r} of Secret {where[0]}/{where[1]}, "
                "which Sidero does not have"
            )
        notes.append(Note(subject, f"BMC {endpoint} not carried: {why}"))
        return None, None
    secret = bmc_secret_name(name)
    port = found.get("port")
    arges_bmc = {
        "address": endpoint,
        "port": port if isinstance(port, int) and 0 < port < 65536 else 623,
        "protocol": "ipmi",
        "credentialsSecretRef": {"name": secret, "namespace": BMC_SECRET_NAMESPACE},
    }
    moved = ", moved out of Sidero's spec.bmc.pass" if found.get("pass") else ""
    body = {
        "metadata": {"name": secret, "labels": {IMPORTED_LABEL: IMPORTED_FROM}},
        "type": "Opaque",
        "stringData": credentials,
    }
    summary = f"BMC credentials of server {name}{moved}"
    return (
        Translated("Secret", secret, body, summary, namespace=BMC_SECRET_NAMESPACE),
        arges_bmc,
    )


def binding(
    name: str,
    obj: dict[str, Any],
    machines: Mapping[tuple[str, str], dict[str, Any]],
    is_installed: bool,
    notes: list[Note],
    now: dt.datetime,
) -> Translated:
    """The Arges ServerBinding for CAPS' ``obj`` (server ``name``), ``machines`` being Sidero's
    MetalMachines by (namespace, name)."""
    subject = f"ServerBinding {name}"
    spec = spec_of(obj)
    ref = as_dict(spec.get("metalMachineRef"))
    namespace, machine_name = str(ref.get("namespace") or "default"), str(ref.get("name") or "")
    machine = machines.get((namespace, machine_name))
    labels = {**labels_of(machine or {}), **labels_of(obj)}
    out_labels = {IMPORTED_LABEL: IMPORTED_FROM}
    if labels.get(CLUSTER_NAME_LABEL):
        out_labels[CLUSTER_NAME_LABEL] = labels[CLUSTER_NAME_LABEL]
    if machine is None:
        notes.append(
            Note(
                subject,
                f"its MetalMachine {namespace}/{machine_name} does not exist in Sidero: imported "
                "bound all the same; delete this ServerBinding to release (and wipe) the server",
            )
        )
    out: dict[str, Any] = {
        "serverRef": {"name": name},
        "consumerRef": {
            "apiVersion": f"{INFRASTRUCTURE_GROUP}/{INFRASTRUCTURE_VERSION}",
            "kind": "MetalMachine",
            "name": machine_name,
            "namespace": namespace,
        },
    }
    class_ref = as_dict(spec.get("serverClassRef"))
    if class_ref.get("name"):
        out["serverClassRef"] = {"name": str(class_ref["name"])}
    if CONTROL_PLANE_LABEL in labels:
        out["role"] = "controlplane"
    if spec.get("siderolink"):
        notes.append(
            Note(
                subject,
                "its SideroLink tunnel is not carried (Arges runs no SideroLink): the node keeps "
                "running, and its Talos keeps trying Sidero's SideroLink, log and event "
                "endpoints until they are removed from its machine config",
            )
        )
    status: dict[str, Any] | None = None
    if is_installed:
        conditions = [
            Condition(
                type=kind,
                status="True",
                reason="ImportedFromSidero",
                message="installed under Sidero: it boots from its disk",
                last_transition_time=now.replace(microsecond=0),
            ).to_json()
            for kind in (CONFIG_DELIVERED, INSTALLED)
        ]
        status = {"conditions": conditions}
    else:
        notes.append(
            Note(
                subject,
                "not installed yet in Sidero: Arges serves it its Environment at its next "
                "network boot, as Sidero would have",
            )
        )
    body = {
        "metadata": {"name": name, "labels": out_labels, "finalizers": [RELEASE_FINALIZER]},
        "spec": out,
    }
    state = "installed: boots from disk" if is_installed else "not installed yet"
    summary = f"bound to MetalMachine {namespace}/{machine_name}, {state}"
    return Translated("ServerBinding", name, body, summary, status=status)
