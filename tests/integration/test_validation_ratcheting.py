"""A CRD's schema tightened under its objects: they stay updatable, as in kube-apiserver 1.33.

Validation ratcheting (KEP-4008): an update is refused only for what it changes. Run with the
real kubectl; the answers are kube-apiserver's.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.integration.conftest import WIDGET_CRD, WIDGETS, Cluster, widget

CRD = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{WIDGET_CRD['metadata']['name']}"


async def tighten(cluster: Cluster) -> None:
    """Tags of at most 3 characters, and a rule: sizes up to 5."""
    status, crd = await cluster.api.get(CRD)
    assert status == 200
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]
    spec["tags"]["items"]["maxLength"] = 3
    spec["size"]["x-kubernetes-validations"] = [{"rule": "self <= 5", "message": "at most 5"}]
    status, body = await cluster.api.put(CRD, crd)
    assert status == 200, body


async def test_objects_stored_under_a_looser_schema_stay_updatable(widgets: Cluster) -> None:
    old = copy.deepcopy(widget("w", 9))
    old["spec"]["tags"] = ["long-tag"]
    status, body = await widgets.api.post(WIDGETS, old)
    assert status == 201, body
    await tighten(widgets)

    # Labels, and the status subresource: the invalid parts are unchanged, so accepted; the
    # failing rule on an unchanged value comes back as a warning, as kube sends it.
    labelled = await widgets.kubectl("label", "widget", "w", "team=a")
    assert "labeled" in labelled.out
    assert 'Warning: spec.size: Invalid value: "integer": at most 5' in labelled.err
    await widgets.kubectl(
        "patch", "widget", "w", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"observedGeneration": 3}}),
    )  # fmt: skip

    # Changing an invalid part to another invalid value is refused, naming only it.
    refused = await widgets.kubectl(
        "patch", "widget", "w", "--type=merge",
        "-p", json.dumps({"spec": {"tags": ["longer-tag"]}}), check=False,
    )  # fmt: skip
    assert refused.code != 0
    assert 'The Widget "w" is invalid' in refused.err
    assert "spec.tags[0]: Too long: may not be more than 3" in refused.err
    assert "spec.size" not in refused.err

    # Making a valid part invalid is refused.
    status, err = await widgets.api.patch(f"{WIDGETS}/w", {"spec": {"size": 7}})
    assert status == 422
    assert [c["field"] for c in err["details"]["causes"]] == ["spec.size"]

    # A create is never ratcheted.
    status, err = await widgets.api.post(WIDGETS, {**old, "metadata": {"name": "new"}})
    assert status == 422
    assert sorted(c["field"] for c in err["details"]["causes"]) == ["spec.size", "spec.tags[0]"]

    # Server-side apply of the object as stored, with a new color: ratcheted as any update.
    applied = {**old, "spec": {**old["spec"], "color": "red"}}
    await widgets.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=ci",
        "-f",
        "-",
        stdin=json.dumps(applied),
    )

    status, stored = await widgets.api.get(f"{WIDGETS}/w")
    assert stored["spec"]["color"] == "red"
    assert stored["metadata"]["labels"] == {"team": "a"}
    assert stored["status"] == {"observedGeneration": 3}
    assert stored["spec"]["tags"] == ["long-tag"] and stored["spec"]["size"] == 9
