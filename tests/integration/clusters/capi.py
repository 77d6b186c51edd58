"""Cluster API core and its bootstrap provider, played as their contracts describe them.

The upstream CRDs come from ../shared/capi (Cluster API core, CABPT, CACPPT), applied with
kubectl; the objects are written as Cluster API's controllers write them: a Cluster owning
its MetalCluster, a Machine owning its MetalMachine (both labelled
``cluster.x-k8s.io/cluster-name``), the bootstrap data Secret (keys ``value`` and ``format``,
owned by the Machine's bootstrap config) whose name lands in
``Machine.spec.bootstrap.dataSecretName``, and the Cluster's infrastructure-provisioned status
copied from the MetalCluster.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import (
    METAL_CLUSTERS,
    METAL_MACHINE_TEMPLATES,
    METAL_MACHINES,
    SECRETS,
    capi_clusters,
    capi_machines,
)
from arges.talos.configgen import ClusterInput
from arges.talos.render import render
from arges.talos.secrets import generate

SHARED = Path(__file__).resolve().parents[4] / "shared" / "capi"
NAME_LABEL = "cluster.x-k8s.io/cluster-name"


def upstream_crds(*projects: str) -> list[Path]:
    """The upstream CRD files of ``projects`` (folders of ../shared/capi), or skip."""
    if not SHARED.is_dir():
        pytest.skip(f"the upstream Cluster API CRDs are not at {SHARED} (../shared is absent)")
    return sorted(p for project in projects for p in (SHARED / project).glob("*_*.yaml"))


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    out, err = await proc.communicate(stdin.encode() if stdin else None)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


async def install(kubeconfig: Path, *projects: str) -> None:
    """Apply the upstream CRDs of ``projects`` and wait until they are established."""
    files = upstream_crds(*projects)
    args = [a for f in files for a in ("-f", str(f))]
    await kubectl(kubeconfig, "apply", *args)
    await kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=30s", *args)


def owner_ref(obj: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        **({"controller": True, "blockOwnerDeletion": True} if controller else {}),
    }


class CapiPlayer:
    """Plays Cluster API core and the bootstrap provider for one cluster in ``namespace``."""

    def __init__(
        self,
        kube: KubeClient,
        cluster: str = "capi",
        namespace: str = "default",
        *,
        version: str = "v1beta2",
    ):
        self.kube = kube
        self.name = cluster
        self.namespace = namespace
        self.bundle = generate()
        # Without Cluster API's conversion webhook an object is written and read at the
        # version its fields are in (Sidero's template is v1beta1).
        self.version = version
        self.clusters = capi_clusters(version)
        self.machines = capi_machines(version)

    async def create_cluster(self, *, endpoint: str = "10.5.0.20") -> dict[str, Any]:
        """A Cluster and its MetalCluster, owned by it as Cluster API makes it so."""
        cluster = await self.kube.create(
            self.clusters,
            {
                "metadata": {"name": self.name},
                "spec": {
                    "infrastructureRef": {
                        "apiGroup": "infrastructure.cluster.x-k8s.io",
                        "kind": "MetalCluster",
                        "name": self.name,
                    }
                },
            },
            self.namespace,
        )
        await self.kube.create(
            METAL_CLUSTERS,
            {
                "metadata": {
                    "name": self.name,
                    "labels": {NAME_LABEL: self.name},
                    "ownerReferences": [owner_ref(cluster, controller=False)],
                },
                "spec": {"controlPlaneEndpoint": {"host": endpoint, "port": 6443}},
            },
            self.namespace,
        )
        return cluster

    async def infrastructure_provisioned(self) -> bool:
        """What Cluster API's cluster controller does once the MetalCluster is provisioned:
        copy it into the Cluster's status (and the endpoint into its spec)."""
        metal = await self.kube.get(METAL_CLUSTERS, self.name, self.namespace)
        status = metal.get("status") or {}
        if not (status.get("initialization") or {}).get("provisioned"):
            return False
        await self.kube.patch(
            self.clusters,
            self.name,
            {"spec": {"controlPlaneEndpoint": metal["spec"]["controlPlaneEndpoint"]}},
            self.namespace,
        )
        ready = (
            {"initialization": {"infrastructureProvisioned": True}}
            if self.version == "v1beta2"
            else {"infrastructureReady": True}
        )
        await self.kube.patch(
            self.clusters, self.name, {"status": ready}, self.namespace, subresource="status"
        )
        return True

    async def create_machine(
        self,
        name: str,
        *,
        control_plane: bool = False,
        server_class: str = "any",
        class_group: str = "metal.arges.dev/v1alpha1",
        server: str | None = None,
        bootstrap: bool = True,
        metal_spec: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A Machine and the MetalMachine it owns; with ``bootstrap``, its data at once."""
        labels = {NAME_LABEL: self.name}
        if control_plane:
            labels["cluster.x-k8s.io/control-plane"] = ""
        machine = await self.kube.create(
            self.machines,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "clusterName": self.name,
                    "bootstrap": {
                        "configRef": self._ref("bootstrap.cluster.x-k8s.io", "TalosConfig", name)
                    },
                    "infrastructureRef": self._ref(
                        "infrastructure.cluster.x-k8s.io", "MetalMachine", name
                    ),
                },
            },
            self.namespace,
        )
        spec: dict[str, Any] = {
            "serverClassRef": {
                "apiVersion": class_group,
                "kind": "ServerClass",
                "name": server_class,
            }
        }
        if server is not None:
            spec = {"serverRef": {"kind": "Server", "name": server}}
        if metal_spec is not None:
            spec = metal_spec
        metal = await self.kube.create(
            METAL_MACHINES,
            {
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "ownerReferences": [owner_ref(machine)],
                },
                "spec": spec,
            },
            self.namespace,
        )
        if bootstrap:
            await self.bootstrap(name, control_plane=control_plane)
        return machine, metal

    def _ref(self, group: str, kind: str, name: str) -> dict[str, Any]:
        """A reference as this version writes it (v1beta2: apiGroup; v1beta1: apiVersion)."""
        if self.version == "v1beta2":
            return {"apiGroup": group, "kind": kind, "name": name}
        version = {"bootstrap.cluster.x-k8s.io": "v1alpha3"}.get(group, "v1alpha3")
        return {"apiVersion": f"{group}/{version}", "kind": kind, "name": name}

    async def bootstrap(self, name: str, *, control_plane: bool = False) -> str:
        """What the bootstrap provider does: render the machine's config into
        ``<machine>-bootstrap-data`` (key ``value``), and Cluster API copies its name into
        the Machine."""
        config = render(
            self.bundle,
            "controlplane" if control_plane else "worker",
            ClusterInput(self.name, "https://10.5.0.20:6443"),
        )
        secret = f"{name}-bootstrap-data"
        await self.kube.create(
            SECRETS,
            {
                "metadata": {"name": secret, "labels": {NAME_LABEL: self.name}},
                "type": "cluster.x-k8s.io/secret",
                "stringData": {"value": config, "format": "cloud-config"},
            },
            self.namespace,
        )
        await self.kube.patch(
            self.machines,
            name,
            {"spec": {"bootstrap": {"dataSecretName": secret}}},
            self.namespace,
        )
        return config

    async def adopt_metal_cluster(self) -> None:
        """What Cluster API's cluster controller does with ``spec.infrastructureRef``: make
        the Cluster the MetalCluster's owner."""
        cluster = await self.kube.get(self.clusters, self.name, self.namespace)
        ref = cluster["spec"]["infrastructureRef"]
        await self.kube.patch(
            METAL_CLUSTERS,
            ref["name"],
            {"metadata": {"ownerReferences": [owner_ref(cluster, controller=False)]}},
            self.namespace,
        )

    async def clone_machine(
        self, template: str, name: str, *, control_plane: bool = False
    ) -> dict[str, Any]:
        """What a MachineDeployment or a control plane does: a Machine, and a MetalMachine
        cloned from the MetalMachineTemplate ``template``, owned by it; then bootstrap data."""
        source = await self.kube.get(METAL_MACHINE_TEMPLATES, template, self.namespace)
        spec = source["spec"]["template"]["spec"]
        machine, _ = await self.create_machine(
            name, control_plane=control_plane, bootstrap=False, metal_spec=spec
        )
        await self.bootstrap(name, control_plane=control_plane)
        return machine

    async def metal_machine(self, name: str) -> dict[str, Any]:
        return await self.kube.get(METAL_MACHINES, name, self.namespace)

    async def delete_machine(self, name: str) -> None:
        """What Cluster API's machine controller does on a Machine's deletion: delete its
        infrastructure machine, wait until it is gone, then let the Machine go."""
        await self.kube.delete(METAL_MACHINES, name, self.namespace)
        while True:
            try:
                await self.kube.get(METAL_MACHINES, name, self.namespace)
            except NotFound:
                break
            await asyncio.sleep(0.1)
        await self.kube.delete(self.machines, name, self.namespace)

    async def pause(self, paused: bool) -> None:
        await self.kube.patch(
            self.clusters, self.name, {"spec": {"paused": paused}}, self.namespace
        )


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None
    )
