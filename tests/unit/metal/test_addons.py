"""Add-ons rendered into machine configs: the example constellation's members, checked as
parsed objects and against Talos' schema, and each add-on's objects on its own."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from arges.api.cluster import TalosClusterSpec
from arges.api.constellation import (
    CertManagerAddon,
    ClusterIssuer,
    Constellation,
    ConstellationMember,
    ExternalDNSAddon,
    MetalLBAddon,
)
from arges.metal.addons import certmanager, metallb, versions
from arges.metal.addons.cilium import fingerprint, new_ca
from arges.metal.addons.render import Context, MemberAddons, render_member
from arges.metal.constellation import members, mesh, problems, talos_cluster_spec
from arges.talos import secrets as talos_secrets
from arges.talos.configgen import ClusterInput
from arges.talos.patches import patch_set
from arges.talos.render import render
from tests.talosconfigs import find, inline_objects, schema_errors

EXAMPLE = Path(__file__).parents[3] / "examples" / "constellation.yaml"
GCP_KEY = base64.b64encode(b'{"type": "service_account", "private_key": "s3cr3t"}').decode()


@pytest.fixture(scope="module")
def example() -> Constellation:
    return Constellation.from_json(yaml.safe_load(EXAMPLE.read_text()))


@pytest.fixture(scope="module")
def ca() -> tuple[str, str]:
    import datetime as dt

    return new_ca("jupiter-system", dt.datetime.now(dt.UTC))


@pytest.fixture(scope="module")
def bundle() -> talos_secrets.SecretsBundle:
    return talos_secrets.generate()


def context(example: Constellation, ca: tuple[str, str]) -> Context:
    return Context(
        constellation=example.name,
        anycast=example.spec.anycast,
        mesh=tuple(mesh(example.spec)),
        cilium_ca=ca,
        credentials={"dns-credentials": {"credentials.json": GCP_KEY}},
    )


def configs(
    bundle: talos_secrets.SecretsBundle, name: str, spec: dict[str, Any], secret: str | None
) -> dict[str, dict[str, Any]]:
    """Both roles' machine configs, patched as the TalosCluster controller patches them, each
    checked against Talos' schema."""
    parsed = TalosClusterSpec.from_json(spec)
    inputs = ClusterInput(name, parsed.endpoint)
    everyone = patch_set("cluster", [], parsed.strategic_patches or [])
    cp = patch_set("controlplane", [], parsed.control_plane.strategic_patches or [])
    sets = [everyone, cp] + ([patch_set("secret", [], [secret])] if secret else [])
    out = {}
    for role, role_sets in (("controlplane", sets), ("worker", [everyone])):
        text = render(bundle, role, inputs, role_sets)
        assert schema_errors(text) == [], role
        out[role] = yaml.safe_load(text)
    return out


def test_the_example_is_valid_and_names_three_clusters(example: Constellation) -> None:
    assert problems(example.spec) == []
    assert [(role, m.name) for role, m in members(example.spec)] == [
        ("barycenter", "jupiter"),
        ("satellite", "ganymede"),
        ("satellite", "callisto"),
    ]
    assert [(p.name, p.id, p.endpoint) for p in mesh(example.spec)] == [
        ("jupiter", 1, "192.0.2.21:2379"),
        ("ganymede", 2, "198.51.100.21:2379"),
        ("callisto", 3, "198.51.100.149:2379"),
    ]


@pytest.mark.parametrize("member", ["jupiter", "ganymede", "callisto"])
def test_each_member_config_carries_its_addons_and_passes_the_schema(
    example: Constellation, ca: tuple[str, str], bundle: talos_secrets.SecretsBundle, member: str
) -> None:
    role, spec = next((r, m) for r, m in members(example.spec) if m.name == member)
    rendered = render_member(spec, role, context(example, ca))
    assert rendered.declared == (
        "cilium",
        "metallb",
        "ingress-nginx",
        "cert-manager",
        "external-dns",
        "kubespan",
    )
    tc_spec = talos_cluster_spec(spec, rendered)
    secret = yaml.safe_dump(rendered.secret_patch)
    assert "patchesFrom" in tc_spec["controlPlane"]
    text = json.dumps(tc_spec)
    assert GCP_KEY not in text and "PRIVATE KEY" not in text, "no credential in the TalosCluster"
    both = configs(bundle, member, tc_spec, secret)
    cp, worker = both["controlplane"], both["worker"]

    for config in (cp, worker):
        assert config["cluster"]["network"]["cni"] == {"name": "none"}
        assert config["cluster"]["proxy"]["disabled"] is True
        assert config["machine"]["network"]["kubespan"] == {"enabled": True}
        assert config["cluster"]["discovery"]["enabled"] is True
    assert "inlineManifests" not in worker["cluster"], "manifests go to control planes only"
    assert cp["cluster"]["extraManifests"] == [
        versions.metallb_manifest(versions.METALLB),
        versions.ingress_nginx_manifest(versions.INGRESS_NGINX),
        versions.cert_manager_manifest(versions.CERT_MANAGER),
    ]
    objects = inline_objects(cp)
    assert list(objects) == [
        "arges-cilium-install",
        "arges-metallb-config",
        "arges-ingress-vip",
        "arges-cert-manager-issuer",
        "arges-external-dns-install",
        "arges-cilium-ca",
        "arges-external-dns-credentials",
    ]

    # Cilium: installed by a bootstrap Job, its values naming this cluster and the others.
    install = objects["arges-cilium-install"]
    job = find(install, "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["containers"][0]["args"][:4] == ["upgrade", "--install", "cilium", "cilium"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--version") + 1] == versions.CILIUM
    assert args[args.index("--repo") + 1] == "https://helm.cilium.io/"
    values = yaml.safe_load(find(install, "ConfigMap")["data"]["values.yaml"])
    cluster_id = spec.addons.cilium.cluster_id  # type: ignore[union-attr]
    assert values["cluster"] == {"name": member, "id": cluster_id}
    assert values["kubeProxyReplacement"] is True
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == ("localhost", 7445)
    peers = values["clustermesh"]["config"]["clusters"]
    assert {p["name"] for p in peers} == {"jupiter", "ganymede", "callisto"} - {member}
    assert values["clustermesh"]["apiserver"]["service"]["annotations"] == {
        "metallb.universe.tf/loadBalancerIPs": spec.addons.cilium.mesh_endpoint  # type: ignore[union-attr]
    }
    (ca_secret,) = objects["arges-cilium-ca"]
    assert ca_secret["metadata"] == {"name": "cilium-ca", "namespace": "kube-system"}
    assert base64.b64decode(ca_secret["data"]["ca.crt"]).decode() == ca[0]

    # MetalLB: its own pool, its peer, and on satellites the anycast pool.
    config = objects["arges-metallb-config"]
    pools = {o["metadata"]["name"]: o for o in config if o["kind"] == "IPAddressPool"}
    if role == "satellite":
        assert set(pools) == {member, "anycast"}
        assert pools["anycast"]["spec"] == {"addresses": ["203.0.113.10/32"], "autoAssign": False}
        assert find(config, "BGPAdvertisement", "anycast")["spec"] == {
            "ipAddressPools": ["anycast"]
        }
    else:
        assert set(pools) == {member}
    peer = find(config, "BGPPeer")
    assert peer["apiVersion"] == "metallb.io/v1beta2" and peer["spec"]["myASN"] == 65000

    # ingress-nginx: a LoadBalancer Service on the anycast address (satellites) or its own.
    service = find(objects["arges-ingress-vip"], "Service")
    wanted = "203.0.113.10" if role == "satellite" else "192.0.2.20"
    assert service["metadata"]["annotations"]["metallb.universe.tf/loadBalancerIPs"] == wanted
    assert service["spec"]["externalTrafficPolicy"] == "Local"

    issuer = find(objects["arges-cert-manager-issuer"], "ClusterIssuer")
    assert issuer["spec"]["acme"]["solvers"] == [
        {"http01": {"ingress": {"ingressClassName": "nginx"}}}
    ]

    dns = objects["arges-external-dns-install"]
    dns_values = yaml.safe_load(find(dns, "ConfigMap")["data"]["values.yaml"])
    assert dns_values["provider"] == {"name": "google"}
    assert dns_values["domainFilters"] == ["example.com"]
    assert dns_values["txtOwnerId"] == "jupiter-system", "one owner id for the constellation"
    assert find(dns, "Job")["spec"]["template"]["spec"].get("hostNetwork") is None
    (credentials,) = objects["arges-external-dns-credentials"]
    assert credentials["metadata"] == {
        "name": "external-dns-credentials",
        "namespace": "external-dns",
    }
    assert credentials["data"] == {"credentials.json": GCP_KEY}


def test_a_member_without_addons_gets_no_patch() -> None:
    member = ConstellationMember.from_json(
        {"name": "plain", "cluster": {"endpoint": "https://10.0.0.1:6443"}}
    )
    rendered = render_member(member, "satellite", Context(constellation="c"))
    assert rendered == MemberAddons(None, None, None, ())
    assert talos_cluster_spec(member, rendered) == {
        **member.cluster.to_json(),
        "controlPlane": member.cluster.control_plane.to_json(),
    }


def test_the_members_own_patches_come_after_the_addons() -> None:
    member = ConstellationMember.from_json(
        {
            "name": "m",
            "cluster": {
                "endpoint": "https://10.0.0.1:6443",
                "strategicPatches": ["cluster: {proxy: {disabled: false}}"],
                "controlPlane": {"strategicPatches": ["machine: {}"]},
            },
            "addons": {"cilium": {"clusterId": 4}},
        }
    )
    spec = talos_cluster_spec(
        member, render_member(member, "satellite", Context(constellation="c"))
    )
    assert yaml.safe_load(spec["strategicPatches"][0])["cluster"]["proxy"] == {"disabled": True}
    assert spec["strategicPatches"][1] == "cluster: {proxy: {disabled: false}}"
    assert spec["controlPlane"]["strategicPatches"][1] == "machine: {}"
    assert "patchesFrom" not in spec["controlPlane"], "no mesh, no credentials: no Secret"


def test_metallb_without_peers_advertises_over_layer_2() -> None:
    addon = MetalLBAddon.from_json(
        {"addressPools": [{"name": "lan", "addresses": ["10.0.0.32/28"]}]}
    )
    objects = metallb.config(addon, None)
    assert [o["kind"] for o in objects] == ["IPAddressPool", "L2Advertisement"]
    assert objects[1]["spec"] == {"ipAddressPools": ["lan"]}


@pytest.mark.parametrize(
    ("provider", "solver"),
    [
        (
            "google",
            {
                "dns01": {
                    "cloudDNS": {
                        "serviceAccountSecretRef": {
                            "name": "external-dns-credentials",
                            "key": "credentials.json",
                        },
                        "project": "p",
                    }
                },
                "selector": {"dnsZones": ["example.com"]},
            },
        ),
        (
            "cloudflare",
            {
                "dns01": {
                    "cloudflare": {
                        "apiTokenSecretRef": {
                            "name": "external-dns-credentials",
                            "key": "CF_API_TOKEN",
                        }
                    }
                },
                "selector": {"dnsZones": ["example.com"]},
            },
        ),
        ("aws", None),
    ],
)
def test_dns01_uses_external_dns_provider(provider: str, solver: dict[str, Any] | None) -> None:
    issuer = ClusterIssuer(email="ops@example.com", solver="dns01")
    dns = ExternalDNSAddon.from_json(
        {
            "provider": provider,
            "zone": "example.com",
            "project": "p",
            "credentialsSecretRef": {"name": "creds"},
        }
    )
    if solver is None:
        with pytest.raises(ValueError, match="not rendered for provider aws"):
            certmanager.cluster_issuer(issuer, dns)
        return
    rendered = certmanager.cluster_issuer(issuer, dns)
    assert rendered["spec"]["acme"]["solvers"] == [solver]
    with pytest.raises(ValueError, match="declare externalDNS"):
        certmanager.cluster_issuer(issuer, None)


def test_dns01_puts_the_credentials_in_cert_managers_namespace_too() -> None:
    member = ConstellationMember.from_json(
        {
            "name": "m",
            "cluster": {"endpoint": "https://10.0.0.1:6443"},
            "addons": {
                "certManager": {"issuer": {"email": "a@example.com", "solver": "dns01"}},
                "externalDNS": {
                    "provider": "cloudflare",
                    "zone": "example.com",
                    "credentialsSecretRef": {"name": "cf"},
                },
            },
        }
    )
    token = base64.b64encode(b"t0ken").decode()
    rendered = render_member(
        member, "satellite", Context(constellation="c", credentials={"cf": {"CF_API_TOKEN": token}})
    )
    assert rendered.secret_patch is not None
    (manifest,) = rendered.secret_patch["cluster"]["inlineManifests"]
    secrets = list(yaml.safe_load_all(manifest["contents"]))
    assert [s["metadata"]["namespace"] for s in secrets] == ["external-dns", "cert-manager"]
    assert all(s["data"] == {"CF_API_TOKEN": token} for s in secrets)
    values_objects = yaml.safe_load_all(
        next(
            m["contents"]
            for m in rendered.control_plane_patch["cluster"]["inlineManifests"]  # type: ignore[index]
            if m["name"] == "arges-external-dns-install"
        )
    )
    config_map = next(o for o in values_objects if o["kind"] == "ConfigMap")
    assert yaml.safe_load(config_map["data"]["values.yaml"])["env"] == [
        {
            "name": "CF_API_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": "external-dns-credentials", "key": "CF_API_TOKEN"}
            },
        }
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "external-dns credentials Secret cf not found"),
        ({"OTHER": "eA=="}, "Secret cf lacks CF_API_TOKEN"),
    ],
)
def test_missing_credentials_are_named_never_shown(
    data: dict[str, str] | None, message: str
) -> None:
    member = ConstellationMember.from_json(
        {
            "name": "m",
            "cluster": {"endpoint": "https://10.0.0.1:6443"},
            "addons": {
                "externalDNS": {
                    "provider": "cloudflare",
                    "zone": "example.com",
                    "credentialsSecretRef": {"name": "cf"},
                }
            },
        }
    )
    credentials = {} if data is None else {"cf": data}
    with pytest.raises(ValueError, match=message):
        render_member(member, "satellite", Context(constellation="c", credentials=credentials))


def test_a_cert_manager_without_dns_renders_http01() -> None:
    addon = CertManagerAddon.from_json({"issuer": {"email": "a@example.com", "name": "le"}})
    issuer = certmanager.cluster_issuer(addon.issuer, None)
    assert issuer["metadata"] == {"name": "le"}
    assert issuer["spec"]["acme"]["privateKeySecretRef"] == {"name": "le-account-key"}


def test_the_ca_fingerprint_is_its_der_sha256(ca: tuple[str, str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(ca[0].encode())
    assert fingerprint(ca[0]) == "sha256:" + cert.fingerprint(hashes.SHA256()).hex()
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
