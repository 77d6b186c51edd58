"""Whether a machine config change takes a reboot, as Talos decides it for ApplyConfiguration.

Talos v1.11's ``Runtime.CanApplyImmediate``
(``internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go``) compares the running
``v1alpha1`` document with the new one after copying over the parts it can change in place:
``debug``, ``cluster``, and under ``machine``: ``ca``, ``acceptedCAs``, ``time``,
``certSANs``, ``install``, ``network``, ``sysfs``, ``sysctls``, ``logging``,
``controlPlane``, ``kubelet``, ``kernel``, ``registries``, ``pods``, ``seccompProfiles``,
``nodeAnnotations``, ``nodeLabels``, ``nodeTaints`` and the features
``kubernetesTalosAPIAccess``, ``kubePrism``, ``hostDNS``, ``imageCache`` and
``nodeAddressSortAlgorithm``. Anything else that differs (the machine type, the disks, the
machine token, ``machine.files``, ...) needs a reboot; the other documents of a
multi-document config always apply in place. Mode AUTO picks NO_REBOOT when nothing else
differs, REBOOT otherwise; mode NO_REBOOT is refused (InvalidArgument) in the latter case.

The comparison here is of the parsed YAML, where Talos compares its typed structs: a field
spelled out with its default value counts as a change here, not there.
"""

from __future__ import annotations

import copy
from typing import Any

from arges.talos.documents import decode

IMMEDIATE_TOP = ("debug", "cluster")
IMMEDIATE_MACHINE = (
    "ca",
    "acceptedCAs",
    "time",
    "certSANs",
    "install",
    "network",
    "sysfs",
    "sysctls",
    "logging",
    "controlPlane",
    "kubelet",
    "kernel",
    "registries",
    "pods",
    "seccompProfiles",
    "nodeAnnotations",
    "nodeLabels",
    "nodeTaints",
)
IMMEDIATE_FEATURES = (
    "kubernetesTalosAPIAccess",
    "kubePrism",
    "hostDNS",
    "imageCache",
    "nodeAddressSortAlgorithm",
)


def v1alpha1(config: str) -> dict[str, Any] | None:
    """The ``v1alpha1`` document of a machine config (the one without ``apiVersion``, with
    ``version: v1alpha1``), or None.

    Raises:
        InvalidInput: when ``config`` is not a YAML stream of mappings.
    """
    for doc in decode(config):
        if doc.get("version") == "v1alpha1" and "apiVersion" not in doc:
            return doc
    return None


def _copy_over(target: dict[str, Any], source: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in source:
            target[key] = copy.deepcopy(source[key])
        else:
            target.pop(key, None)


def reboot_reason(current: str | None, new: str) -> str | None:
    """Why applying ``new`` to a node running ``current`` takes a reboot, or None when Talos
    applies it in place (see the module docstring). No running config (None) or no
    ``v1alpha1`` document on either side takes a reboot, as in Talos.

    Raises:
        InvalidInput: when either config is not a YAML stream of mappings.
    """
    if current is None:
        return "no current config"
    running, wanted = v1alpha1(current), v1alpha1(new)
    if running is None:
        return "current config is not v1alpha1"
    if wanted is None:
        return "new config is not v1alpha1"
    wanted = copy.deepcopy(wanted)
    _copy_over(wanted, running, IMMEDIATE_TOP)
    machine_now = running.get("machine")
    machine_new = wanted.get("machine")
    if isinstance(machine_now, dict) and isinstance(machine_new, dict):
        _copy_over(machine_new, machine_now, IMMEDIATE_MACHINE)
        features_now = machine_now.get("features")
        features_new = machine_new.get("features")
        if isinstance(features_now, dict) and isinstance(features_new, dict):
            _copy_over(features_new, features_now, IMMEDIATE_FEATURES)
    if wanted == running:
        return None
    changed = sorted(
        {f"machine.{k}" for k in _differing(machine_now, machine_new)}
        | {k for k in _differing(running, wanted) if k != "machine"}
    )
    return "this config change can't be applied in immediate mode: " + ", ".join(changed)


def _differing(a: Any, b: Any) -> set[str]:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return set() if a == b else {"(whole document)"}
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
