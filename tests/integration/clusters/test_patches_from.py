"""A pool's ``patchesFrom``: patches read from Secrets, for those that carry credentials. A
missing Secret fails the spec by name and allocates nothing; once it exists the cluster
converges with the patch in its configs, and the value is never shown in the TalosCluster."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from arges.kube.resources import SECRETS
from tests.integration.clusters.conftest import NS, Rack, all_in, create_cluster
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow

TOKEN = "t0ken-from-a-secret"
PATCH = yaml.safe_dump(
    {
        "cluster": {
            "inlineManifests": [
                {
                    "name": "dns-credentials",
                    "contents": yaml.safe_dump(
                        {
                            "apiVersion": "v1",
                            "kind": "Secret",
                            "metadata": {"name": "dns", "namespace": "kube-system"},
                            "stringData": {"token": TOKEN},
                        }
                    ),
                }
            ]
        }
    }
)


async def test_a_patch_from_a_secret_reaches_the_control_plane_config_only(rack: Rack) -> None:
    await rack.add()
    await rack.add()
    await create_cluster(
        rack.kube,
        controlPlane={"replicas": 1, "patchesFrom": [{"name": "dns-patch", "key": "patch"}]},
    )
    cond = await eventually(lambda: rack.condition("ConfigValid"), timeout=20)
    assert cond["status"] == "False"
    assert "Secret dns-patch key patch: the Secret does not exist" in cond["message"]
    assert await rack.bindings() == []

    await rack.kube.create(
        SECRETS, {"metadata": {"name": "dns-patch"}, "stringData": {"patch": PATCH}}, NS
    )
    # Not a change of the TalosCluster: its controller finds the Secret when it checks again.
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=90, what="cluster ready")
    members = {m["role"]: m for m in await rack.members()}
    control_plane = yaml.safe_load(rack.sim(members["controlplane"]["server"]).installed)
    worker = yaml.safe_load(rack.sim(members["worker"]["server"]).installed)
    (manifest,) = control_plane["cluster"]["inlineManifests"]
    assert yaml.safe_load(manifest["contents"])["stringData"] == {"token": TOKEN}
    assert "inlineManifests" not in worker["cluster"]
    assert TOKEN not in json.dumps(await rack.cluster())


async def test_a_secret_value_that_is_not_a_patch_is_named_not_quoted(rack: Rack) -> None:
    await rack.add()
    value = "- just: a list\n  " + TOKEN
    await rack.kube.create(
        SECRETS,
        {"metadata": {"name": "bad"}, "data": {"patch": base64.b64encode(value.encode()).decode()}},
        NS,
    )
    await create_cluster(
        rack.kube,
        workers=0,
        controlPlane={"replicas": 1, "patchesFrom": [{"name": "bad", "key": "patch"}]},
    )
    cond = await eventually(lambda: rack.condition("ConfigValid"), timeout=20)
    assert cond["status"] == "False" and "Secret bad key patch" in cond["message"]
    assert TOKEN not in json.dumps(await rack.cluster())
    assert await rack.bindings() == []
