"""Resource types the server serves, their per-kind rules, and the registry that finds them.

A :class:`ResourceType` is what kube-apiserver knows about one resource (``servers`` in
``metal.arges.dev``): names, scope, versions with their schemas and printer columns, and a
:class:`Strategy` with the kind's rules (what create and update may change, extra validation,
which fields can be selected). Built-in kinds are declared in :mod:`arges.apiserver.builtin`;
custom resources come from CustomResourceDefinitions through :mod:`arges.apiserver.crd`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from arges.apiserver.celvalidator import Validator
from arges.apiserver.errors import Cause
from arges.apiserver.patch import PatchMeta
from arges.apiserver.schema import Schema
from arges.apiserver.webhookclient import ClientConfig


@dataclass(frozen=True)
class PrinterColumn:
    """One column of ``kubectl get`` (a CRD's ``additionalPrinterColumns`` entry).

    ``json_path`` is kube JSONPath without braces (``.status.phase``); built-in kinds may give
    ``compute`` instead, a function of the object. ``priority`` > 0 shows only with ``-o wide``.
    """

    name: str
    type: str
    json_path: str = ""
    description: str = ""
    format: str = ""
    priority: int = 0
    compute: Callable[[dict[str, Any]], Any] | None = None


@dataclass(frozen=True)
class Version:
    """One served version of a resource."""

    name: str
    schema: Schema | None
    served: bool = True
    storage: bool = False
    status: bool = False
    columns: tuple[PrinterColumn, ...] = ()
    selectable_fields: tuple[str, ...] = ()
    deprecated: bool = False
    deprecation_warning: str | None = None
    rules: Validator | None = None
    """The schema's ``x-kubernetes-validations``, compiled (custom resources only)."""


@dataclass(frozen=True)
class ConversionWebhook:
    """A CRD's ``spec.conversion`` with strategy ``Webhook``: where ConversionReviews go and
    in which ``apiextensions.k8s.io`` version (the first of ``conversionReviewVersions`` this
    server speaks: v1 or v1beta1)."""

    client: ClientConfig
    review_version: str


class Strategy:
    """The rules of a kind, as kube-apiserver's ``RESTCreateStrategy``/``RESTUpdateStrategy``.

    The defaults are those of custom resources; built-in kinds override what differs.
    """

    generation: bool = True
    """Whether ``metadata.generation`` is kept (set to 1, bumped on non-metadata changes)."""
    strategic: PatchMeta | None = None
    """The kind's strategic-merge-patch rules; None means the format is refused (CRs)."""
    unconditional_update: bool = False
    """Whether PUT may omit ``metadata.resourceVersion`` (false for custom resources)."""
    name_is_label: bool = False
    """Whether names are DNS-1123 labels (namespaces) instead of subdomains."""
    field_labels: frozenset[str] = frozenset()
    """Field-selector fields beyond ``metadata.name`` and ``metadata.namespace``."""
    return_deleted_object: bool = False
    """Whether a DELETE that removes the object answers with it instead of a ``Status``
    (the generic registry's ``ReturnDeletedObject``: true for namespaces only here)."""

    def prepare_for_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Adjust a new object before validation (e.g. drop status when it is a subresource)."""
        if rt.storage_version().status:
            obj.pop("status", None)

    def prepare_for_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> None:
        """Adjust an update of the main resource (status is kept when it is a subresource)."""
        if rt.storage_version().status:
            _keep(new, old, "status")

    def begin_deletion(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Adjust an object that a first DELETE finds without ``deletionTimestamp`` (e.g. add
        the finalizers its own controllers hold it with)."""
        return

    def validate(self, rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
        """Kind rules beyond the schema, for create and update."""
        return []

    def validate_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> list[Cause]:
        """Rules comparing the new object with the old (immutable fields)."""
        return []

    def fields(self, obj: dict[str, Any]) -> dict[str, str]:
        """Values of :attr:`field_labels` for ``obj``."""
        return {}


def _keep(new: dict[str, Any], old: dict[str, Any], key: str) -> None:
    if key in old:
        new[key] = old[key]
    else:
        new.pop(key, None)


@dataclass(frozen=True)
class ResourceType:
    """Everything the server knows about one resource."""

    group: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    versions: tuple[Version, ...]
    strategy: Strategy
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    list_kind: str = ""
    crd: str | None = None
    """The name of the CRD that defines this resource; None for built-in kinds."""
    terminating: bool = False
    """The defining CRD is being deleted: no new objects may be created."""
    conversion: ConversionWebhook | None = None
    """How objects change version when not only ``apiVersion`` differs (None: relabel)."""
    verbs: tuple[str, ...] = field(
        default=(
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        )
    )

    @property
    def resource(self) -> str:
        """The qualified name, the store's key for this resource (``servers.metal.arges.dev``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    def api_version(self, version: str) -> str:
        """``apiVersion`` for ``version`` of this resource: ``group/version``, or ``version`` for
        the core group."""
        return f"{self.group}/{version}" if self.group else version

    def storage_version(self) -> Version:
        """The version objects are stored at (exactly one is marked ``storage``)."""
        return next(v for v in self.versions if v.storage)

    def served(self) -> list[Version]:
        """Served versions, most preferred first."""
        return [v for v in self.versions if v.served]

    def version(self, name: str) -> Version | None:
        """The served version called ``name``, or None (unknown, or not served)."""
        return next((v for v in self.versions if v.name == name and v.served), None)

    def field_labels(self, version: Version) -> frozenset[str]:
        """The fields a field selector may name at ``version``: ``metadata.name`` and
        ``metadata.namespace``, the kind's own (a built-in's, as kube-apiserver's), and a CRD
        version's ``selectableFields``."""
        return (
            frozenset({"metadata.name", "metadata.namespace"})
            | self.strategy.field_labels
            | frozenset(f.lstrip(".") for f in version.selectable_fields)
        )


_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(name: str) -> tuple[int, int, int, str]:
    """Sort key putting versions in Kubernetes' priority order (most preferred first).

    GA before beta before alpha, higher numbers first, then non-Kubernetes-style names
    alphabetically (``k8s.io/apimachinery/pkg/version.CompareKubeAwareVersionStrings``).
    """
    m = _KUBE_VERSION.match(name)
    if not m:
        return (3, 0, 0, name)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, name)


class Registry:
    """Resource types by group, version and plural (or short name, or kind).

    Built-in types are fixed at construction; CRD-defined types come and go with their CRDs.
    """

    def __init__(self, builtins: Iterable[ResourceType]) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._builtin: set[tuple[str, str]] = set()
        for rt in builtins:
            self._types[(rt.group, rt.plural)] = rt
            self._builtin.add((rt.group, rt.plural))
        self.generation = 0
        """Bumped on every change, so discovery and OpenAPI caches know to rebuild."""

    def put(self, rt: ResourceType) -> None:
        """Add or replace a CRD-defined type."""
        key = (rt.group, rt.plural)
        if key in self._builtin:
            raise ValueError(f"{rt.resource} is a built-in resource")
        self._types[key] = rt
        self.generation += 1

    def remove(self, group: str, plural: str) -> None:
        """Stop serving a CRD-defined type (built-in types stay)."""
        if (group, plural) in self._builtin:
            return
        if self._types.pop((group, plural), None) is not None:
            self.generation += 1

    def get(self, group: str, plural: str) -> ResourceType | None:
        """The resource ``plural`` of API group ``group`` ("" for core), or None."""
        return self._types.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> tuple[ResourceType, Version] | None:
        """The resource and its served ``version``, or None when either is unknown or the
        version is not served."""
        rt = self._types.get((group, plural))
        if rt is None:
            return None
        v = rt.version(version)
        return (rt, v) if v is not None else None

    def by_resource(self, resource: str) -> ResourceType | None:
        """The resource by its qualified name (``servers.metal.arges.dev``, ``secrets``), or
        None."""
        plural, _, group = resource.partition(".")
        return self._types.get((group, plural))

    def all(self) -> list[ResourceType]:
        """Every registered resource, built-in and custom."""
        return list(self._types.values())

    def groups(self) -> dict[str, list[str]]:
        """Group name to its served versions, most preferred first (core group is "")."""
        out: dict[str, set[str]] = {}
        for rt in self._types.values():
            for v in rt.served():
                out.setdefault(rt.group, set()).add(v.name)
        return {g: sorted(vs, key=version_priority) for g, vs in out.items()}
