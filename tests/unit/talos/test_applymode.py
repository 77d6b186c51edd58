"""Which config changes Talos applies in place, and the Kubernetes images in a config."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from arges.talos import secrets
from arges.talos.applymode import reboot_reason
from arges.talos.components import COMPONENTS, image, tag, with_image
from arges.talos.configgen import ClusterInput, machine_config
from arges.talos.documents import encode
from arges.talos.patches import apply, patch_set

BUNDLE = secrets.generate()


def config(machine_type: str = "controlplane", **patch: Any) -> str:
    spec = ClusterInput(cluster_name="lab", endpoint="https://10.5.0.10:6443")
    docs = [machine_config(BUNDLE, machine_type, spec)]  # type: ignore[arg-type]
    if patch:
        docs = apply(docs, [patch_set("test", [], [yaml.safe_dump(patch)])])
    return encode(docs)


BASE = config()


@pytest.mark.parametrize(
    ("patch", "reboots"),
    [
        ({}, False),
        ({"machine": {"kubelet": {"image": "ghcr.io/siderolabs/kubelet:v1.34.2"}}}, False),
        ({"cluster": {"apiServer": {"image": "registry.k8s.io/kube-apiserver:v1.34.2"}}}, False),
        ({"machine": {"install": {"image": "ghcr.io/siderolabs/installer:v1.11.7"}}}, False),
        ({"machine": {"nodeLabels": {"rack": "r1"}}}, False),
        ({"machine": {"sysctls": {"vm.nr_hugepages": "64"}}}, False),
        ({"machine": {"network": {"hostname": "cp-1"}}}, False),
        ({"machine": {"features": {"kubePrism": {"enabled": False}}}}, False),
        ({"machine": {"features": {"rbac": False}}}, True),
        ({"machine": {"env": {"HTTP_PROXY": "http://proxy:3128"}}}, True),
        ({"machine": {"files": [{"path": "/var/f", "content": "x", "op": "create"}]}}, True),
        ({"machine": {"token": "abcdef.0123456789abcdef"}}, True),
    ],
)
def test_what_takes_a_reboot(patch: dict[str, Any], reboots: bool) -> None:
    reason = reboot_reason(BASE, config(**patch))
    assert (reason is not None) is reboots
    if reason is not None:
        assert reason.startswith("this config change can't be applied in immediate mode: ")
        assert f"machine.{next(iter(patch['machine']))}" in reason


def test_a_node_without_a_config_or_v1alpha1_reboots() -> None:
    assert reboot_reason(None, BASE) == "no current config"
    other = "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: https://x\n"
    assert reboot_reason(other, BASE) == "current config is not v1alpha1"
    assert reboot_reason(BASE, other) == "new config is not v1alpha1"


def test_component_images_in_upgrade_k8s_order() -> None:
    assert [image(BASE, c) for c in COMPONENTS] == [
        "registry.k8s.io/kube-apiserver:v1.34.1",
        "registry.k8s.io/kube-controller-manager:v1.34.1",
        "registry.k8s.io/kube-scheduler:v1.34.1",
        "registry.k8s.io/kube-proxy:v1.34.1",
        "ghcr.io/siderolabs/kubelet:v1.34.1",
    ]
    worker = config("worker")
    assert [image(worker, c) for c in COMPONENTS] == [
        None,
        None,
        None,
        None,
        "ghcr.io/siderolabs/kubelet:v1.34.1",
    ]


def test_with_image_changes_that_image_only() -> None:
    changed = with_image(BASE, "kube-scheduler", "registry.k8s.io/kube-scheduler:v1.34.2")
    assert image(changed, "kube-scheduler") == "registry.k8s.io/kube-scheduler:v1.34.2"
    before, after = yaml.safe_load(BASE), yaml.safe_load(changed)
    after["cluster"]["scheduler"]["image"] = before["cluster"]["scheduler"]["image"]
    assert after == before
    assert reboot_reason(BASE, changed) is None


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ghcr.io/siderolabs/installer:v1.11.6", "v1.11.6"),
        ("registry:5000/installer:v1.12.0", "v1.12.0"),
        ("registry:5000/installer", None),
        ("ghcr.io/siderolabs/installer@sha256:abc", None),
        ("ghcr.io/siderolabs/installer:v1.11.6@sha256:abc", "v1.11.6"),
        ("", None),
        (None, None),
    ],
)
def test_tag(ref: str | None, expected: str | None) -> None:
    assert tag(ref) == expected
