"""Checks shared by the tests of rendered machine configs: Talos' schema, and the manifests a
config carries read back as Kubernetes objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

SCHEMA = Path(__file__).parents[2] / "shared" / "talos" / "config.schema.v1.11.json"
NAMESPACED = {
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Service",
    "Job",
    "IPAddressPool",
    "BGPPeer",
    "BGPAdvertisement",
    "L2Advertisement",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRoleBinding", "ClusterIssuer"}


def schema_errors(config: str) -> list[str]:
    """Talos v1.11 schema errors of a machine config (YAML text), or skip without the schema
    (``../shared`` is absent)."""
    if not SCHEMA.exists():
        pytest.skip(f"Talos' schema is not at {SCHEMA} (shared/ is absent)")
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = []
    for doc in yaml.safe_load_all(config):
        # talosctl always writes persist: true, which the schema does not list.
        doc.pop("persist", None)
        errors += [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    return errors


def inline_objects(config: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The objects of each inline manifest (by name), each checked to be a Kubernetes object:
    apiVersion, kind, a name, and a namespace exactly when its kind is namespaced."""
    out = {}
    for manifest in (config.get("cluster") or {}).get("inlineManifests") or []:
        objects = [d for d in yaml.safe_load_all(manifest["contents"]) if d is not None]
        for obj in objects:
            assert (isinstance(obj.get("apiVersion"), str) and "/" in obj["apiVersion"]) or obj[
                "apiVersion"
            ] == "v1", obj
            assert obj["kind"] in NAMESPACED | CLUSTER_SCOPED, obj["kind"]
            meta = obj["metadata"]
            assert meta["name"], obj
            assert ("namespace" in meta) == (obj["kind"] in NAMESPACED), obj
        out[manifest["name"]] = objects
    return out


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``)."""
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in objects])
    return found[0]
