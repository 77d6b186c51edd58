"""CustomResourceDefinitions generated from the resource models.

The models in :mod:`arges.api` are the single source of truth; this module turns each into an
``apiextensions.k8s.io/v1`` CRD with a structural schema (every node typed, ``$ref``s inlined,
``Optional`` as absent rather than null, free-form values marked
``x-kubernetes-preserve-unknown-fields``), printer columns and short names. The embedded API
server installs them at start, and ``deploy/crds/`` holds the same YAML for real clusters
(regenerate with ``python -m arges.api.manifests deploy``; a test fails when it is stale).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from arges.api.base import Model
from arges.api.binding import ServerBinding
from arges.api.cluster import CLUSTER_GROUP, TalosCluster
from arges.api.constellation import Constellation
from arges.api.environment import Environment
from arges.api.infrastructure import (
    INFRASTRUCTURE_GROUP,
    INFRASTRUCTURE_VERSION,
    MetalCluster,
    MetalMachine,
    MetalMachineTemplate,
)
from arges.api.plane import ManagementPlane
from arges.api.server import Server
from arges.api.serverclass import ServerClass

GROUP = "metal.arges.dev"
VERSION = "v1alpha1"
_ZERO = ("", 0)


@dataclass(frozen=True)
class Column:
    """An ``additionalPrinterColumns`` entry."""

    name: str
    type: str
    json_path: str
    priority: int = 0
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        """The CRD's ``additionalPrinterColumns`` entry for this column."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            out["priority"] = self.priority
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Definition:
    """What a CRD needs beyond its model."""

    model: type[Model]
    plural: str
    short_names: tuple[str, ...]
    columns: tuple[Column, ...]
    group: str = GROUP
    version: str = VERSION
    namespaced: bool = False
    categories: tuple[str, ...] = ("arges",)
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        return self.model.__name__

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"


def _condition(kind: str) -> str:
    return f'.status.conditions[?(@.type=="{kind}")].status'


AGE = Column("Age", "date", ".metadata.creationTimestamp")
CLUSTER = Column("Cluster", "string", r".metadata.labels.cluster\.x-k8s\.io/cluster-name")
"""The Cluster API cluster an object belongs to (Sidero's column, with escaped dots)."""
PROVIDER_LABELS = (
    # The Cluster API contract versions implemented, each naming the API versions that do
    # (Cluster API reads these to know which status fields to read).
    ("cluster.x-k8s.io/v1beta1", INFRASTRUCTURE_VERSION),
    ("cluster.x-k8s.io/v1beta2", INFRASTRUCTURE_VERSION),
    ("cluster.x-k8s.io/provider", "infrastructure-arges"),
    # clusterctl move discovers the kinds of CRDs carrying this label (clusterctl init puts it
    # on what it installs; Arges installs these CRDs itself in embedded mode).
    ("clusterctl.cluster.x-k8s.io", ""),
)
DEFINITIONS = (
    Definition(
        Server,
        "servers",
        ("srv",),
        (
            Column("Hostname", "string", ".status.hostname"),
            Column("BMC", "string", ".spec.bmc.address", priority=1),
            Column("Redfish", "string", ".spec.bmc.endpoint", priority=1),
            Column("Accepted", "boolean", ".spec.accepted"),
            Column("Cordoned", "boolean", ".spec.cordoned"),
            Column("Allocated", "boolean", ".status.inUse"),
            Column("Clean", "boolean", ".status.isClean"),
            Column("Power", "string", ".status.power"),
            AGE,
        ),
    ),
    Definition(
        ServerClass,
        "serverclasses",
        ("sc",),
        (
            Column("Available", "string", ".status.serversAvailable"),
            Column("In Use", "string", ".status.serversInUse"),
            AGE,
        ),
    ),
    Definition(
        Environment,
        "environments",
        ("env",),
        (
            Column("Kernel", "string", ".spec.kernel.url", priority=1),
            Column("Initrd", "string", ".spec.initrd.url", priority=1),
            Column("Ready", "string", _condition("Ready")),
            AGE,
        ),
    ),
    Definition(
        ServerBinding,
        "serverbindings",
        ("sb",),
        (
            Column("Server", "string", ".spec.serverRef.name"),
            Column("Role", "string", ".spec.role"),
            Column("Consumer", "string", ".spec.consumerRef.name"),
            Column("Class", "string", ".spec.serverClassRef.name", priority=1),
            Column("Installed", "string", _condition("Installed")),
            AGE,
        ),
    ),
    Definition(
        TalosCluster,
        "talosclusters",
        ("tc",),
        (
            Column("Endpoint", "string", ".spec.endpoint"),
            Column("Control Planes", "string", ".status.controlPlanes"),
            Column("Workers", "string", ".status.workerCount"),
            Column("Phase", "string", ".status.phase"),
            Column("Updated", "string", ".status.updated"),
            Column("Talos", "string", ".status.talosVersion", priority=1),
            Column("Kubernetes", "string", ".status.kubernetesVersion", priority=1),
            AGE,
        ),
        group=CLUSTER_GROUP,
        namespaced=True,
    ),
    Definition(
        Constellation,
        "constellations",
        ("cst",),
        (
            Column("Barycenter", "string", ".spec.barycenter.name"),
            Column("Anycast", "string", ".status.anycastAddress"),
            Column("Mesh", "string", ".status.clusterMesh.state"),
            Column("Phase", "string", ".status.phase"),
            AGE,
        ),
        group=CLUSTER_GROUP,
        namespaced=True,
    ),
    Definition(
        ManagementPlane,
        "managementplanes",
        ("plane",),
        (
            Column("Paused", "boolean", ".spec.paused"),
            Column("Reason", "string", ".spec.reason"),
            AGE,
        ),
    ),
    Definition(
        MetalCluster,
        "metalclusters",
        (),
        (
            CLUSTER,
            Column("Ready", "boolean", ".status.ready"),
            Column("Endpoint", "string", ".spec.controlPlaneEndpoint", priority=1),
            AGE,
        ),
        group=INFRASTRUCTURE_GROUP,
        version=INFRASTRUCTURE_VERSION,
        namespaced=True,
        categories=("cluster-api",),
        labels=PROVIDER_LABELS,
    ),
    Definition(
        MetalMachine,
        "metalmachines",
        (),
        (
            Column("Ready", "boolean", ".status.ready"),
            CLUSTER,
            Column("Machine", "string", '.metadata.ownerReferences[?(@.kind=="Machine")].name'),
            Column("Server", "string", ".spec.serverRef.name"),
            Column("ProviderID", "string", ".spec.providerID", priority=1),
            AGE,
        ),
        group=INFRASTRUCTURE_GROUP,
        version=INFRASTRUCTURE_VERSION,
        namespaced=True,
        categories=("cluster-api",),
        labels=PROVIDER_LABELS,
    ),
    Definition(
        MetalMachineTemplate,
        "metalmachinetemplates",
        (),
        (AGE,),
        group=INFRASTRUCTURE_GROUP,
        version=INFRASTRUCTURE_VERSION,
        namespaced=True,
        categories=("cluster-api",),
        labels=PROVIDER_LABELS,
    ),
)


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def structural(node: Any) -> Any:
    """Turn a pydantic JSON schema (refs already resolved) into a structural schema."""
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string"):
        # ``int | str``: the one union a structural schema allows, in kube's own form.
        described = {"description": " ".join(str(node["description"]).split())}
        return {
            **(described if "description" in node else {}),
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
        }
    variants = node.get("anyOf")
    if variants is not None:
        present = [v for v in variants if v.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(present) == 1:
            return structural({**present[0], **rest})
    if "allOf" in node and len(node["allOf"]) == 1:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return structural({**node["allOf"][0], **rest})
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "default":
            # Booleans keep their false default so kubectl shows "false", not "<none>"; empty
            # strings and zeros (the inventory's) are left out.
            if value is False or (
                value is not None and value not in _ZERO and not isinstance(value, dict | list)
            ):
                out[key] = value
        elif key == "description":
            out[key] = " ".join(str(value).split())
        elif key == "properties":
            out[key] = {name: structural(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value)
        else:
            out[key] = value
    if "type" not in out and not any(k in out for k in ("anyOf", "oneOf", "allOf")):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("additionalProperties") == {"x-kubernetes-preserve-unknown-fields": True}:
        out.pop("additionalProperties")
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[Model]) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of a top-level resource model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = structural(_resolve(raw, raw.get("$defs", {})))
    props = schema["properties"]
    props["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an "
        "object.",
    }
    props["kind"] = {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object "
        "represents.",
    }
    props["metadata"] = {"type": "object"}
    schema.pop("required", None)
    schema["required"] = [k for k in ("spec",) if k in (raw.get("required") or [])]
    if not schema["required"]:
        del schema["required"]
    return schema


def crd(definition: Definition) -> dict[str, Any]:
    """The CustomResourceDefinition for one resource."""
    kind = definition.kind
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": definition.name,
            **({"labels": dict(definition.labels)} if definition.labels else {}),
        },
        "spec": {
            "group": definition.group,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": definition.plural,
                "singular": kind.lower(),
                "shortNames": list(definition.short_names),
                "categories": list(definition.categories),
            },
            "scope": "Namespaced" if definition.namespaced else "Cluster",
            "versions": [
                {
                    "name": definition.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_json() for c in definition.columns],
                    "schema": {"openAPIV3Schema": openapi_schema(definition.model)},
                }
            ],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    """Every CRD Arges defines, in a stable order: a copy of its own to each caller."""
    crds: list[dict[str, Any]] = orjson.loads(_all_crds_json())
    return crds


@functools.cache
def _all_crds_json() -> bytes:
    # Built once: pydantic's JSON schemas of the models cost about 60 ms, and every API
    # server, plane and manifest started in a process asks for them.
    return orjson.dumps([crd(d) for d in DEFINITIONS])


def render(obj: dict[str, Any]) -> str:
    """The YAML text checked in under ``deploy/crds``."""
    return yaml.safe_dump(obj, sort_keys=False, width=100)
