"""What every part of the Sidero translation shares: its input and output types, the label
imported objects carry, accessors that never raise on malformed input (a field of the wrong
type reads as absent), and the fields Servers and ServerClasses share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import ValidationError

from arges.api.base import BootFromDiskMethod, JSONPatchOperation

IMPORTED_LABEL = "metal.arges.dev/imported-from"
"""On everything the import writes: ``sidero``."""
IMPORTED_FROM = "sidero"
BMC_SECRET_NAMESPACE = "default"
_DISK_METHODS: tuple[str, ...] = get_args(BootFromDiskMethod)


@dataclass(frozen=True)
class SideroState:
    """What was read from the Sidero management cluster, as its API served it.

    ``secrets`` maps (namespace, name) to the decoded ``data`` of the Secrets the Servers'
    ``userFrom``/``passFrom`` name (see :func:`secret_refs`); a missing one is absent.
    """

    servers: list[dict[str, Any]]
    server_classes: list[dict[str, Any]]
    environments: list[dict[str, Any]]
    bindings: list[dict[str, Any]]
    metal_machines: list[dict[str, Any]]
    secrets: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Note:
    """One thing that could not be carried over as it was, and why."""

    subject: str
    text: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.text}"


@dataclass(frozen=True)
class Translated:
    """One Arges object to write.

    ``body`` is what is created (metadata and spec, or a Secret's ``stringData``); ``status``
    what goes into its status subresource afterwards; ``last`` the spec fields written last
    (a Server's BMC: until its status says clean or bound, nothing may power it); ``summary``
    says in a few words what it carries. A Secret's body holds credentials: never print it.
    """

    kind: str
    name: str
    body: dict[str, Any]
    summary: str
    namespace: str | None = None
    status: dict[str, Any] | None = None
    last: dict[str, Any] | None = None

    @property
    def subject(self) -> str:
        """How the report names it: kind, then namespace/name."""
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True)
class Translation:
    """Everything to write, in order (Secrets, Environments, ServerClasses, ServerBindings,
    Servers: a Server is written after its binding, so it is never seen unbound), and the
    notes."""

    objects: list[Translated]
    notes: list[Note]


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[dict[str, Any]]:
    """The JSON objects in ``value`` if it is a list (anything else in it reads as empty)."""
    return [as_dict(v) for v in value] if isinstance(value, list) else []


def meta_of(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj``'s metadata (empty if it has none)."""
    return as_dict(obj.get("metadata"))


def spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj``'s spec (empty if it has none)."""
    return as_dict(obj.get("spec"))


def status_of(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj``'s status (empty if it has none)."""
    return as_dict(obj.get("status"))


def name_of(obj: dict[str, Any]) -> str:
    """``obj``'s name ("" if it has none)."""
    return str(meta_of(obj).get("name") or "")


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    """``obj``'s labels, as strings."""
    return {str(k): str(v) for k, v in as_dict(meta_of(obj).get("labels")).items()}


def condition_true(obj: dict[str, Any], kind: str) -> bool:
    """Whether ``obj``'s status has condition ``kind`` True (Sidero's Cluster API
    conditions and Kubernetes' have these two fields alike)."""
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in as_list(status_of(obj).get("conditions"))
    )


def imported_labels(obj: dict[str, Any]) -> dict[str, str]:
    """``obj``'s labels, and the import's."""
    return {**labels_of(obj), IMPORTED_LABEL: IMPORTED_FROM}


def bmc_secret_name(server: str) -> str:
    """The Secret holding an imported server's BMC credentials (in ``default``)."""
    return f"bmc-{server}"


def secret_refs(servers: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The (namespace, name) of every Secret the Servers' BMC ``userFrom``/``passFrom``
    name: the ones to read from Sidero."""
    refs = set()
    for server in servers:
        bmc = as_dict(spec_of(server).get("bmc"))
        for source in ("userFrom", "passFrom"):
            ref = as_dict(as_dict(bmc.get(source)).get("secretKeyRef"))
            if ref.get("name"):
                refs.add((str(ref.get("namespace") or "default"), str(ref["name"])))
    return refs


def common_spec(subject: str, spec: dict[str, Any], notes: list[Note]) -> dict[str, Any]:
    """The fields Servers and ServerClasses share, in Arges' form: ``environmentRef`` (by
    name), ``bootFromDiskMethod``, ``configPatches`` (RFC 6902) and ``strategicPatches``;
    what is invalid is dropped with a note."""
    out: dict[str, Any] = {}
    env = as_dict(spec.get("environmentRef"))
    if env.get("name"):
        out["environmentRef"] = {"name": str(env["name"])}
    method = spec.get("bootFromDiskMethod")
    if method in _DISK_METHODS:
        out["bootFromDiskMethod"] = method
    elif method:
        notes.append(Note(subject, f"spec.bootFromDiskMethod {method!r} is not one Arges knows"))
    patches = []
    raw = spec.get("configPatches")
    for i, patch in enumerate(raw if isinstance(raw, list) else []):
        try:
            patches.append(JSONPatchOperation.from_json(patch).to_json())
        except ValidationError:
            notes.append(
                Note(subject, f"spec.configPatches[{i}] dropped: not an RFC 6902 operation")
            )
    if patches:
        out["configPatches"] = patches
    raw = spec.get("strategicPatches")
    strategic = [p for p in (raw if isinstance(raw, list) else []) if isinstance(p, str)]
    if strategic:
        out["strategicPatches"] = strategic
    return out
