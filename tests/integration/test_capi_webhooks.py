"""The real Cluster API v1.10.10 CRDs (with their conversion webhook patches) and webhook
configurations install, and route requests to their webhooks (real kubectl).

They are read from the Go module cache (``go env GOMODCACHE``), rendered with ``kubectl
kustomize`` as ``config/`` lays them out, and their ``clientConfig.service`` is rewritten to a
``url`` of the test's webhook server (an API server with no cluster network cannot reach a
Service). The Talos providers (CABPT v0.6.12, CACPPT v0.5.10) are installed the same way when
their modules are there too. Nothing of theirs is copied into the repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import Cluster, kubectl_binary
from tests.integration.webhook_server import WebhookServer

CAPI = "sigs.k8s.io/cluster-api@v1.10.10"
PROVIDERS = (
    "github.com/siderolabs/cluster-api-bootstrap-provider-talos@v0.6.12",
    "github.com/siderolabs/cluster-api-control-plane-provider-talos@v0.5.10",
)


def module_cache() -> Path:
    go = shutil.which("go")
    if go is not None:
        out = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return Path.home() / "go" / "pkg" / "mod"


def config_dir(module: str) -> Path:
    path = module_cache() / module / "config"
    if not path.is_dir():
        pytest.skip(f"{module} is not in the Go module cache ({path}): `go mod download {module}`")
    return path


def kustomize(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of an absolute path (a relative one with '@' reads as a git URL)."""
    out = subprocess.run(
        [kubectl_binary(), "kustomize", str(path.resolve())],
        capture_output=True,
        text=True,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def to_url(client: dict[str, Any], server: WebhookServer) -> dict[str, Any]:
    """A ``service`` clientConfig rewritten to the test server's ``url``, trusting its CA."""
    path = (client.get("service") or {}).get("path", "")
    return {"url": f"{server.url}{path}", "caBundle": server.pki.ca_bundle}


def crds(module: str, server: WebhookServer) -> list[dict[str, Any]]:
    out = []
    for crd in kustomize(config_dir(module) / "crd"):
        conversion = crd["spec"].get("conversion") or {}
        if conversion.get("strategy") == "Webhook":
            webhook = conversion["webhook"]
            webhook["clientConfig"] = to_url(webhook["clientConfig"], server)
        out.append(crd)
    return out


def webhook_configurations(module: str, server: WebhookServer) -> list[dict[str, Any]]:
    path = config_dir(module) / "webhook" / "manifests.yaml"
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    prefix = module.rsplit("/", 1)[1].split("@")[0]
    for doc in docs:
        doc["metadata"]["name"] = f"{prefix}-{doc['metadata']['name']}"
        for hook in doc["webhooks"]:
            hook["clientConfig"] = to_url(hook["clientConfig"], server)
    return docs


async def apply(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    # Server-side: the CRDs are too big for client-side apply's annotation.
    await cluster.kubectl(
        "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs), timeout=120
    )


async def test_cluster_api_crds_and_webhooks_install_and_route(
    cluster: Cluster, webhook: WebhookServer
) -> None:
    capi_crds = crds(CAPI, webhook)
    assert len(capi_crds) == 13
    assert (
        sum((c["spec"].get("conversion") or {}).get("strategy") == "Webhook" for c in capi_crds)
        == 10
    )
    await apply(cluster, capi_crds)
    await cluster.kubectl(
        "wait", "--for", "condition=Established", "crd", "--all", "--timeout=30s", timeout=60
    )
    stored = json.loads(
        (await cluster.kubectl("get", "crd", "clusters.cluster.x-k8s.io", "-o", "json")).out
    )
    assert stored["spec"]["conversion"]["webhook"]["clientConfig"]["url"].endswith("/convert")
    assert stored["spec"]["conversion"]["webhook"]["conversionReviewVersions"] == ["v1", "v1beta1"]

    configurations = webhook_configurations(CAPI, webhook)
    assert {c["kind"] for c in configurations} == {
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
    await apply(cluster, configurations)
    out = await cluster.kubectl(
        "get", "mutatingwebhookconfigurations,validatingwebhookconfigurations"
    )
    assert "cluster-api-mutating-webhook-configuration" in out.out

    cluster_object = {
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "kind": "Cluster",
        "metadata": {"name": "prod", "namespace": "default"},
        "spec": {"paused": True},
    }
    await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(cluster_object))
    [mutate] = webhook.received("/mutate-cluster-x-k8s-io-v1beta1-cluster")
    [validate] = webhook.received("/validate-cluster-x-k8s-io-v1beta1-cluster")
    for review in (mutate, validate):
        assert review["apiVersion"] == "admission.k8s.io/v1"
        assert review["request"]["kind"] == {
            "group": "cluster.x-k8s.io",
            "version": "v1beta1",
            "kind": "Cluster",
        }
        assert review["request"]["operation"] == "CREATE"
    assert webhook.received("/convert") == [], "v1beta1 is the only served and stored version"


async def test_talos_providers_crds_and_webhooks_install(
    cluster: Cluster, webhook: WebhookServer
) -> None:
    for module in PROVIDERS:
        await apply(cluster, crds(module, webhook))
    await cluster.kubectl(
        "wait", "--for", "condition=Established", "crd", "--all", "--timeout=30s", timeout=60
    )
    for module in PROVIDERS:
        await apply(cluster, webhook_configurations(module, webhook))
    template = {
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1alpha3",
        "kind": "TalosConfigTemplate",
        "metadata": {"name": "workers", "namespace": "default"},
        "spec": {"template": {"spec": {"generateType": "join"}}},
    }
    await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(template))
    template["spec"]["template"]["spec"]["talosVersion"] = "v1.11"
    await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(template))
    # CABPT validates TalosConfigTemplate updates only.
    [review] = webhook.received("/validate-bootstrap-cluster-x-k8s-io-v1alpha3-talosconfigtemplate")
    assert review["request"]["operation"] == "UPDATE"
    assert review["request"]["oldObject"]["spec"]["template"]["spec"] == {"generateType": "join"}
