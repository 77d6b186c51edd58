"""A Constellation of three clusters on simulated servers: applied with kubectl, its
TalosClusters created and provisioned, every member's config carrying its add-ons (read back
as objects, checked against Talos' schema), credentials in Secrets only, and the status
complete."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from arges.cli.main import main
from arges.kube.resources import CONSTELLATIONS, SECRETS, TALOS_CLUSTERS
from tests.integration.clusters.conftest import NS, Rack
from tests.integration.conftest import eventually, kubectl_binary
from tests.talosconfigs import find, inline_objects, schema_errors

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[3] / "examples" / "constellation.yaml"
GCP_KEY = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----x"}'


def small_example() -> dict[str, Any]:
    """The example constellation with one control plane and one worker per cluster."""
    body = yaml.safe_load(EXAMPLE.read_text())
    spec = body["spec"]
    for member in [spec["barycenter"], *spec["satellites"]]:
        member["cluster"]["controlPlane"] = {"replicas": 1}
        member["cluster"]["workers"] = [{"name": "workers", "replicas": 1}]
    return body


async def kubectl(rack: Rack, *args: str, stdin: str | None = None) -> str:
    assert rack.plane.api is not None
    proc = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(rack.plane.api.kubeconfig_path),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin else None)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def member_configs(rack: Rack, cluster: str) -> dict[str, dict[str, Any]]:
    """The member config Secrets of ``cluster``, by role (text)."""
    selector = f"cluster.arges.dev/cluster-name={cluster},cluster.arges.dev/member"
    out = {}
    for secret in await rack.kube.list(SECRETS, NS, label_selector=selector):
        text = base64.b64decode(secret["data"]["config"]).decode()
        out[secret["metadata"]["annotations"]["cluster.arges.dev/role"]] = {
            "text": text,
            "doc": yaml.safe_load(text),
        }
    return out


async def running(rack: Rack) -> dict[str, Any] | None:
    body = await rack.kube.get(CONSTELLATIONS, "jupiter-system", NS)
    status = body.get("status") or {}
    mesh = status.get("clusterMesh") or {}
    return body if status.get("phase") == "Running" and mesh.get("state") == "Wired" else None


async def test_a_constellation_of_three_clusters(rack: Rack) -> None:
    for _ in range(6):
        await rack.add(wait=False)
    for sim in rack.servers:
        await eventually(lambda sim=sim: rack.available(sim), timeout=60, what="servers clean")
    await rack.kube.create(
        SECRETS,
        {"metadata": {"name": "dns-credentials"}, "stringData": {"credentials.json": GCP_KEY}},
        NS,
    )
    out = await kubectl(rack, "apply", "-f", "-", stdin=yaml.safe_dump(small_example()))
    assert "constellation.cluster.arges.dev/jupiter-system created" in out

    async def members() -> list[dict[str, Any]] | None:
        found = await rack.kube.list(
            TALOS_CLUSTERS, NS, label_selector="cluster.arges.dev/constellation=jupiter-system"
        )
        return found if len(found) == 3 else None

    clusters = await eventually(members, timeout=30, what="three TalosClusters")
    constellation = await rack.kube.get(CONSTELLATIONS, "jupiter-system", NS)
    roles = {
        c["metadata"]["name"]: c["metadata"]["labels"]["cluster.arges.dev/constellation-role"]
        for c in clusters
    }
    assert roles == {"jupiter": "barycenter", "ganymede": "satellite", "callisto": "satellite"}
    for cluster in clusters:
        (owner,) = cluster["metadata"]["ownerReferences"]
        assert owner["uid"] == constellation["metadata"]["uid"] and owner["controller"] is True
        text = json.dumps(cluster)
        assert "private_key" not in text and "PRIVATE KEY" not in text, "no credential in it"
        assert cluster["spec"]["controlPlane"]["patchesFrom"] == [
            {"name": f"{cluster['metadata']['name']}-addons", "key": "patch"}
        ]

    body = await eventually(lambda: running(rack), timeout=120, what="constellation Running")
    status = body["status"]
    rows = {m["name"]: m for m in status["members"]}
    assert {
        n: (r["phase"], r["controlPlanes"], r["workers"]) for n, r in rows.items()
    } == dict.fromkeys(("jupiter", "ganymede", "callisto"), ("Running", "1/1", "1/1"))
    assert (
        rows["ganymede"]["ingressAddress"] == rows["callisto"]["ingressAddress"] == "203.0.113.10"
    )
    assert rows["jupiter"]["endpoint"] == "https://192.0.2.10:6443"
    assert all("cilium" in r["addons"] and "kubespan" in r["addons"] for r in rows.values())
    mesh = status["clusterMesh"]
    assert [(c["name"], c["id"]) for c in mesh["clusters"]] == [
        ("jupiter", 1),
        ("ganymede", 2),
        ("callisto", 3),
    ]
    ca = await rack.kube.get(SECRETS, mesh["caSecret"], NS)
    ca_crt = base64.b64decode(ca["data"]["ca.crt"]).decode()
    assert status["anycastAddress"] == "203.0.113.10"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Valid": "True",
        "MembersCreated": "True",
    }

    for name in ("jupiter", "ganymede", "callisto"):
        configs = await member_configs(rack, name)
        assert set(configs) == {"controlplane", "worker"}
        for role, config in configs.items():
            assert schema_errors(config["text"]) == [], (name, role)
            assert config["doc"]["cluster"]["network"]["cni"] == {"name": "none"}
            assert config["doc"]["machine"]["network"]["kubespan"] == {"enabled": True}
        assert "inlineManifests" not in configs["worker"]["doc"]["cluster"]
        objects = inline_objects(configs["controlplane"]["doc"])
        (shared_ca,) = objects["arges-cilium-ca"]
        assert base64.b64decode(shared_ca["data"]["ca.crt"]).decode() == ca_crt, "one CA"
        values = yaml.safe_load(
            find(objects["arges-cilium-install"], "ConfigMap")["data"]["values.yaml"]
        )
        assert values["cluster"]["name"] == name
        (credentials,) = objects["arges-external-dns-credentials"]
        assert base64.b64decode(credentials["data"]["credentials.json"]).decode() == GCP_KEY
        pools = {
            o["metadata"]["name"]
            for o in objects["arges-metallb-config"]
            if o["kind"] == "IPAddressPool"
        }
        assert ("anycast" in pools) == (name != "jupiter")
        # What the control plane installed is that config.
        cp = next(m for m in rows[name] and await rack.members(name) if m["role"] == "controlplane")
        assert rack.sim(cp["server"]).installed == configs["controlplane"]["text"]

    printed = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        [
            "constellation",
            "status",
            "jupiter-system",
            "--kubeconfig",
            str(rack.plane.api.kubeconfig_path),  # type: ignore[union-attr]
        ],
    )
    assert printed.exit_code == 0, printed.output
    text = printed.output
    assert "Constellation jupiter-system: Running" in text
    assert "ClusterMesh: Wired" in text and "198.51.100.21:2379" in text
    assert "Anycast ingress: 203.0.113.10" in text
    listed = await kubectl(rack, "get", "constellations", "-n", NS)
    assert "Running" in listed and "Wired" in listed and "203.0.113.10" in listed
