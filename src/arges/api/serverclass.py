"""ServerClass: a pool of servers chosen by labels and hardware (``metal.arges.dev/v1alpha1``).

Membership is computed by :mod:`arges.metal.classes` and shown in ``status``. Qualifiers come
in three forms, all of which must hold:

- ``expressions``: CEL expressions over the Server's ``status.hardware`` that must all be
  true, e.g. ``hardware.compute.totalCoreCount >= 16`` or
  ``hardware.storage.devices.exists(d, d.type == "NVMe" && d.size >= 1000000000000)``;
- ``hardware``: Sidero's partial-match qualifiers, kept for readability: a list of partial
  inventories (:mod:`arges.api.qualifiers`), any one of which must match; inside one, every
  field given must equal the server's (lists compared element by element);
- ``labelSelectors``: Sidero v1alpha2's label qualifiers, with Sidero's meaning: a server
  matches when any one ``key: value`` of any one map is among its labels (an OR of every
  pair, sidero#288; ``selector`` is the ANDed, standard form).
"""

from __future__ import annotations

from pydantic import Field

from arges.api.base import (
    BootFromDiskMethod,
    Condition,
    JSONPatchOperation,
    LabelSelector,
    LocalObjectReference,
    Model,
    Object,
)
from arges.api.qualifiers import MAX_QUALIFIERS, HardwareQualifier
from arges.api.server import BootMethod

ANY_CLASS = "any"
"""The built-in class every accepted, uncordoned server belongs to."""


class Qualifiers(Model):
    """Hardware conditions a server must meet (see the module docstring)."""

    expressions: list[str] | None = Field(
        default=None,
        description="CEL expressions over `hardware` (the Server's status.hardware), `labels` "
        "and `name`; all must evaluate to true.",
    )
    hardware: list[HardwareQualifier] | None = Field(
        default=None,
        max_length=MAX_QUALIFIERS,
        description="Partial inventories (at most 16); a server matches if any one matches, "
        "field by field (fields left empty or zero are ignored).",
    )
    label_selectors: list[dict[str, str]] | None = Field(
        default=None,
        description="Sidero's label qualifiers: a server matches if it has any one key: value "
        "pair of any one map (an OR; use spec.selector to AND labels).",
    )


class ServerClassSpec(Model):
    """Which servers belong to the class, and what its members get."""

    selector: LabelSelector | None = Field(
        default=None, description="Label selector over Servers (ANDed with qualifiers)."
    )
    qualifiers: Qualifiers | None = None
    environment_ref: LocalObjectReference | None = Field(
        default=None, description="Environment booted by members allocated through this class."
    )
    boot_method: BootMethod | None = Field(
        default=None,
        description="How members without their own spec.bootMethod reach the agent: network "
        "or virtualMedia.",
    )
    config_patches: list[JSONPatchOperation] | None = Field(
        default=None, description="RFC 6902 patches for members' machine configs."
    )
    strategic_patches: list[str] | None = Field(
        default=None, description="Talos strategic merge patches for members' machine configs."
    )
    boot_from_disk_method: BootFromDiskMethod | None = None


class ServerClassStatus(Model):
    """Current members of the class."""

    servers_available: list[str] | None = Field(
        default=None, description="Members not bound to anything."
    )
    servers_in_use: list[str] | None = Field(default=None, description="Members that are bound.")
    conditions: list[Condition] | None = None


class ServerClass(Object):
    """ServerClass is a pool of servers chosen by labels and hardware qualifiers, with the
    Environment and machine-config patches its members get when allocated through it."""

    api_version: str = "metal.arges.dev/v1alpha1"
    kind: str = "ServerClass"
    spec: ServerClassSpec = Field(default_factory=ServerClassSpec)
    status: ServerClassStatus = Field(default_factory=ServerClassStatus)
