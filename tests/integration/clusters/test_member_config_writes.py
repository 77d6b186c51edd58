"""How the cluster controller writes a member's config Secret: created without a read, taken
as its reconcile listed it, and read only when a Secret it did not list is in the way."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from arges.api.binding import ServerBinding
from arges.api.cluster import TalosCluster
from arges.api.crds import all_crds
from arges.controllers.clusters import owned
from arges.controllers.clusters.state import Round
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.resources import SECRETS, SERVER_BINDINGS
from arges.metal.memberconfig import POOL_LABEL, record_of
from tests.integration.clusters.conftest import create_cluster
from tests.integration.conftest import requests_of, start_server

NS = "default"
UUID = "5d1f9c1e-0a53-4c84-9a43-2f6b1c1d7e01"
CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n"


async def worker_binding(kube: KubeClient, uuid: str) -> ServerBinding:
    """A binding of server ``uuid`` to the ``demo`` cluster's ``workers`` pool."""
    return ServerBinding.from_json(
        await kube.create(
            SERVER_BINDINGS,
            {
                "metadata": {"name": uuid, "labels": {POOL_LABEL: "workers"}},
                "spec": {
                    "serverRef": {"name": uuid},
                    "role": "worker",
                    "consumerRef": {
                        "apiVersion": "cluster.arges.dev/v1alpha1",
                        "kind": "TalosCluster",
                        "name": "demo",
                        "namespace": NS,
                    },
                },
            },
        )
    )


async def test_a_member_config_is_written_on_what_the_reconcile_listed(tmp_path: Path) -> None:
    api = await start_server(tmp_path / "api", crds=all_crds())
    try:
        async with KubeClient(from_kubeconfig(api.kubeconfig_path)) as kube:
            cluster = TalosCluster.from_json(await create_cluster(kube))
            binding = await worker_binding(kube, UUID)
            state = Round(kube, cluster, [], dt.datetime.now(dt.UTC), None)
            name = owned.config_name("demo", UUID)

            with requests_of(kube) as sent:
                await owned.member_config(state, binding, "workers", CONFIG)
            assert sent == [("POST", f"/api/v1/namespaces/{NS}/secrets")], "no read first"

            listed = owned.by_server(await owned.listed_members(kube, cluster))[UUID]
            with requests_of(kube) as sent:
                kept = await owned.member_config(state, binding, "workers", CONFIG, listed)
            assert (sent, kept) == ([], listed), "as listed, up to date: nothing sent"

            # A leftover the reconcile could not list (no member labels) is read, then
            # rendered anew for this binding.
            await kube.delete(SECRETS, name, NS)
            await kube.create(
                SECRETS, {"metadata": {"name": name}, "stringData": {"config": "old"}}, NS
            )
            with requests_of(kube) as sent:
                anew = await owned.member_config(state, binding, "workers", CONFIG)
            assert [m for m, _ in sent] == ["POST", "GET", "PUT"]
            assert anew is not None
            assert record_of(anew).binding_uid == binding.metadata["uid"]
    finally:
        await api.stop()


async def test_a_clusters_member_configs_are_written_at_once(tmp_path: Path) -> None:
    api = await start_server(tmp_path / "api", crds=all_crds())
    try:
        async with KubeClient(from_kubeconfig(api.kubeconfig_path)) as kube:
            cluster = TalosCluster.from_json(await create_cluster(kube))
            uuids = [f"5d1f9c1e-0a53-4c84-9a43-2f6b1c1d7e0{i}" for i in range(1, 4)]
            bindings = [await worker_binding(kube, uuid) for uuid in uuids]
            started: list[str] = []
            all_started = asyncio.Event()
            create = kube.create

            async def held_create(resource: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
                # Each create waits for the other two: one after another, they never would.
                started.append(body["metadata"]["name"])
                if len(started) == len(uuids):
                    all_started.set()
                await asyncio.wait_for(all_started.wait(), 10)
                return await create(resource, body, *args, **kwargs)

            kube.create = held_create  # type: ignore[method-assign]
            state = Round(kube, cluster, [], dt.datetime.now(dt.UTC), None)
            written = await owned.member_configs(state, bindings, {"workers": CONFIG}, {})
            del kube.create
            assert sorted(written) == sorted(uuids)
            listed = owned.by_server(await owned.listed_members(kube, cluster))
            assert {u: s["metadata"]["name"] for u, s in listed.items()} == {
                u: owned.config_name("demo", u) for u in uuids
            }
    finally:
        await api.stop()
