"""``/configdata`` against a real plane: lookups, patches, errors, delivery records.

The machine asks ``/ipxe`` first and fetches the ``talos.config=`` URL it is given, as Talos
does (the URL carries the boot's credential); who else is refused is in ``test_hostile``."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
import yaml

from arges.api.binding import ServerBinding
from arges.kube.client import KubeClient
from arges.kube.resources import EVENTS, SECRETS, SERVER_BINDINGS, SERVER_CLASSES, SERVERS
from arges.metal.memberconfig import BINDING_UID, metadata_for
from arges.talos.configgen import ClusterInput
from arges.talos.render import render
from arges.talos.secrets import generate
from tests.integration.conftest import Machine, Network, config_url, register, requests_of

UUID = "8b2c7a12-5f3e-4d61-9a0b-1c2d3e4f5a6b"


@pytest.fixture
async def metadata(network: Network) -> AsyncIterator[tuple[Machine, KubeClient]]:
    machine = Machine(network.base, "127.0.0.21")
    yield machine, network.kube
    await machine.close()


async def fetch(machine: Machine, uuid: str = UUID) -> tuple[int, str, str]:
    """Boot ``uuid`` into its target, then fetch the config URL it was given."""
    script = await machine.boot(uuid, want="talos.config=")
    async with machine.session.get(config_url(script, uuid)) as resp:
        return resp.status, resp.content_type, await resp.text()


async def bound_server(
    kube: KubeClient,
    *,
    class_patches: dict | None = None,
    server_patches: dict | None = None,
    with_secret: bool = True,
    secret_annotations: dict[str, str] | None = None,
) -> str:
    await register(kube, UUID, accepted=True, clean=True)
    await kube.create(
        SERVER_CLASSES, {"metadata": {"name": "workers"}, "spec": class_patches or {}}
    )
    if server_patches:
        await kube.patch(SERVERS, UUID, {"spec": server_patches})
    config = render(generate(), "worker", ClusterInput("demo", "https://10.88.0.10:6443"))
    binding = await kube.create(
        SERVER_BINDINGS,
        {
            "metadata": {"name": UUID},
            "spec": {
                "serverRef": {"name": UUID},
                "serverClassRef": {"name": "workers"},
                "role": "worker",
                "consumerRef": {
                    "apiVersion": "cluster.arges.dev/v1alpha1",
                    "kind": "TalosCluster",
                    "name": "demo",
                    "namespace": "default",
                },
                "configSecretRef": {"name": f"demo-{UUID[:8]}-config", "namespace": "default"},
            },
        },
    )
    if with_secret:
        # As the cluster controller writes it: recording the binding it was rendered for.
        labels, annotations, _ = metadata_for(
            ServerBinding.from_json(binding), "demo", "workers", config
        )
        await kube.create(
            SECRETS,
            {
                "metadata": {
                    "name": f"demo-{UUID[:8]}-config",
                    "labels": labels,
                    "annotations": {**annotations, **(secret_annotations or {})},
                },
                "data": {"config": base64.b64encode(config.encode()).decode()},
            },
            "default",
        )
    return config


async def test_a_bound_server_gets_its_patched_config(metadata) -> None:
    machine, kube = metadata
    await bound_server(
        kube,
        class_patches={
            "strategicPatches": ["machine: {nodeLabels: {pool: workers}}"],
            "configPatches": [
                {"op": "add", "path": "/machine/network/hostname", "value": "from-class"}
            ],
        },
        server_patches={
            "configPatches": [
                {"op": "replace", "path": "/machine/network/hostname", "value": "from-server"}
            ],
            "strategicPatches": ["machine: {install: {disk: /dev/vda}}"],
        },
    )
    status, ctype, body = await fetch(machine, UUID.upper())
    assert (status, ctype) == (200, "text/yaml"), body
    doc = yaml.safe_load(body)
    assert doc["machine"]["type"] == "worker"
    assert doc["machine"]["network"]["hostname"] == "from-server", "server patches come last"
    assert doc["machine"]["nodeLabels"] == {"pool": "workers"}
    assert doc["machine"]["install"]["disk"] == "/dev/vda"
    server = await kube.get(SERVERS, UUID)
    delivered = next(c for c in server["status"]["conditions"] if c["type"] == "ConfigDelivered")
    assert delivered["status"] == "True" and "127.0.0.21" in delivered["message"]
    binding = await kube.get(SERVER_BINDINGS, UUID)
    assert binding["status"]["conditions"][0]["type"] == "ConfigDelivered"
    events = await kube.list(EVENTS, "default", field_selector=f"involvedObject.name={UUID}")
    assert "ConfigDelivered" in {e["reason"] for e in events}


async def test_an_unrendered_config_is_a_404_to_its_machine_only(metadata) -> None:
    machine, kube = metadata
    await bound_server(kube, with_secret=False)
    await kube.patch(SERVER_BINDINGS, UUID, {"spec": {"configSecretRef": None}})
    status, _, body = await fetch(machine)
    assert status == 404 and "has no machine config yet" in body
    async with machine.session.get(f"{machine.base}/configdata?uuid={UUID}") as resp:
        assert resp.status == 403 and await resp.text() == "forbidden\n", "no credential"


async def test_a_missing_secret_is_a_404_with_its_name(metadata) -> None:
    machine, kube = metadata
    await bound_server(kube, with_secret=False)
    status, _, body = await fetch(machine)
    assert status == 404 and f"default/demo-{UUID[:8]}-config is missing" in body


async def test_a_failing_patch_is_a_500_naming_it(metadata) -> None:
    machine, kube = metadata
    await bound_server(
        kube,
        server_patches={
            "configPatches": [{"op": "replace", "path": "/machine/does/not/exist", "value": 1}]
        },
    )
    script = await machine.boot(UUID, want="talos.config=")
    for _ in range(2):
        status, body = await machine.get(config_url(script, UUID))
        assert status == 500 and f"Server {UUID} patch #1" in body


async def test_a_config_rendered_for_another_binding_is_never_served(metadata) -> None:
    machine, kube = metadata
    await bound_server(kube, secret_annotations={BINDING_UID: "an-earlier-binding"})
    status, _, body = await fetch(machine)
    assert status == 404 and "rendered for an earlier binding" in body
    assert "version: v1alpha1" not in body


async def test_a_delivery_reads_its_server_and_binding_once(metadata) -> None:
    # The delivery is recorded on the copies the request read: each is read once, and
    # written once.
    machine, kube = metadata
    await bound_server(kube)
    script = await machine.boot(UUID, want="talos.config=")
    with requests_of(kube, "arges.metadata.service") as sent:
        async with machine.session.get(config_url(script, UUID)) as resp:
            assert resp.status == 200, await resp.text()
    for resource in ("servers", "serverbindings"):
        calls = [m for m, p in sent if f"/{resource}/{UUID}" in p]
        assert calls == ["GET", "PATCH"], (resource, sent)
    binding = await kube.get(SERVER_BINDINGS, UUID)
    assert binding["status"]["conditions"][0]["type"] == "ConfigDelivered"
