"""The embedded API server's local socket: the same API, for the owner of the data directory
only, still authenticated; the controllers' client uses it instead of HTTPS."""

from __future__ import annotations

import stat
from dataclasses import replace

import aiohttp
import pytest

from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.errors import NotFound
from arges.kube.resources import SECRETS
from tests.integration.conftest import Cluster


async def test_the_local_socket_is_the_owners_and_asks_for_the_token(cluster: Cluster) -> None:
    path = cluster.server.socket_path
    assert path is not None and path.parent == cluster.server.data_dir
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(str(path))) as session:
        async with session.get("http://localhost/api/v1/namespaces") as resp:
            body = await resp.json()
            assert (resp.status, body["reason"]) == (401, "Unauthorized")
        headers = {"Authorization": f"Bearer {cluster.server.token}"}
        async with session.get("http://localhost/api/v1/namespaces", headers=headers) as resp:
            names = {item["metadata"]["name"] for item in (await resp.json())["items"]}
            assert resp.status == 200 and "default" in names


async def test_a_client_on_the_local_socket_reads_and_writes_the_same_objects(
    cluster: Cluster,
) -> None:
    connection = from_kubeconfig(cluster.server.kubeconfig_path)
    local = replace(connection, unix_socket=cluster.server.socket_path)
    secret = {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
    async with KubeClient(local) as kube:
        await kube.create(SECRETS, secret, "default")
    status, body = await cluster.api.get("/api/v1/namespaces/default/secrets/s")
    assert (status, body["data"]) == (200, {"k": "dg=="})
    async with KubeClient(local) as kube:
        await kube.delete(SECRETS, "s", "default")
        with pytest.raises(NotFound):
            await kube.get(SECRETS, "s", "default")


async def test_stopping_removes_the_socket(cluster: Cluster) -> None:
    path = cluster.server.socket_path
    assert path is not None
    await cluster.server.stop()
    assert not path.exists()
