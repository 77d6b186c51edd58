"""The Secrets a TalosCluster owns, and the records kept in its members' config Secrets.

- ``<cluster>-secrets`` (key ``secrets.yaml``): the secrets bundle, created once and never
  regenerated;
- ``<cluster>-talosconfig`` (key ``talosconfig``): the admin talosconfig, created once, its
  endpoints following the control-plane members' addresses;
- ``<cluster>-kubeconfig`` (key ``kubeconfig``): the admin kubeconfig, once fetched;
- ``<cluster>-config-<server>``: each member's config (:mod:`arges.metal.memberconfig`), owned
  by the member's ServerBinding, with the records of what the running member got.

Values are created once: a racing creator's value wins, so a value never changes once
written. Secret values never go to logs, events or status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from arges.api.binding import CONFIG_KEY, ServerBinding
from arges.api.cluster import TalosCluster
from arges.api.server import Server
from arges.controllers import clustermemo
from arges.controllers.clusters.state import Round
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, Conflict, NotFound
from arges.kube.resources import SECRETS
from arges.metal.memberconfig import (
    APPLIED_DIGEST,
    APPLIED_KEY,
    CLUSTER_LABEL,
    DIGEST,
    MEMBER_LABEL,
    POOL_LABEL,
    ROLLOUT_STEP,
    digest,
    metadata_for,
    mismatch,
    orphans,
    record_of,
    stale,
)
from arges.metal.rollout import Step
from arges.talos import documents
from arges.talos.secrets import SecretsBundle, generate
from arges.talos.talosconfig import ClientCredentials, talosconfig

log = logging.getLogger(__name__)

BUNDLE_KEY = "secrets.yaml"
TALOSCONFIG_KEY = "talosconfig"
KUBECONFIG_KEY = "kubeconfig"


def secrets_name(cluster: str) -> str:
    """The name of the cluster's secrets bundle Secret."""
    return f"{cluster}-secrets"


def talosconfig_name(cluster: str) -> str:
    """The name of the cluster's admin talosconfig Secret."""
    return f"{cluster}-talosconfig"


def kubeconfig_name(cluster: str) -> str:
    """The name of the cluster's admin kubeconfig Secret."""
    return f"{cluster}-kubeconfig"


def config_name(cluster: str, server: str) -> str:
    """The name of a member's config Secret."""
    return f"{cluster}-config-{server}"


def address_of(server: Server | None) -> str | None:
    """The server's first InternalIP (where its Talos API listens), if known."""
    for addr in (server.status.addresses or []) if server is not None else []:
        if addr.type == "InternalIP":
            return addr.address
    return None


def text(secret: dict[str, Any], key: str) -> str | None:
    """The text under ``key`` of a Secret as the API returns it (None when absent)."""
    encoded = (secret.get("data") or {}).get(key)
    return base64.b64decode(encoded).decode() if encoded else None


async def read(kube: KubeClient, cluster: TalosCluster, name: str, key: str) -> str | None:
    """The text under ``key`` of the cluster's Secret ``name`` (None when either is absent)."""
    try:
        secret = await kube.get(SECRETS, name, cluster.namespace)
    except NotFound:
        return None
    return text(secret, key)


def _owned(cluster: TalosCluster, name: str, key: str, value: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {CLUSTER_LABEL: cluster.name},
            "ownerReferences": [
                {
                    "apiVersion": cluster.api_version,
                    "kind": cluster.kind,
                    "name": cluster.name,
                    "uid": cluster.metadata.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "type": "Opaque",
        "stringData": {key: value},
    }


async def create_once(
    kube: KubeClient, cluster: TalosCluster, name: str, key: str, make: Callable[[], str]
) -> str:
    """The value of ``key`` in Secret ``name``, created from ``make()`` if absent (a racing
    creator's value wins, so the value never changes once written). ``make`` runs on a
    thread: a secrets bundle's RSA-4096 key takes about a second of CPU, which OpenSSL
    spends without the GIL, so boot requests and other reconciles go on meanwhile."""
    existing = await read(kube, cluster, name, key)
    if existing is not None:
        return existing
    value = await asyncio.to_thread(make)
    try:
        await kube.create(SECRETS, _owned(cluster, name, key, value), cluster.namespace)
    except AlreadyExists:
        again = await read(kube, cluster, name, key)
        if again is None:
            raise
        return again
    return value


async def bundle(kube: KubeClient, cluster: TalosCluster) -> SecretsBundle:
    """The cluster's secrets bundle, generated on first use."""
    value = await create_once(
        kube, cluster, secrets_name(cluster.name), BUNDLE_KEY, lambda: generate().to_yaml()
    )
    return clustermemo.bundle(value)


async def admin_credentials(
    kube: KubeClient,
    cluster: TalosCluster,
    secrets: SecretsBundle,
    bindings: list[ServerBinding],
    servers: Mapping[str, Server],
) -> ClientCredentials:
    """The admin talosconfig's credentials; its endpoints are brought up to date with the
    control-plane members' addresses first."""
    name = talosconfig_name(cluster.name)
    value = await create_once(
        kube, cluster, name, TALOSCONFIG_KEY, lambda: talosconfig(secrets, cluster.name)
    )
    endpoints = sorted(
        a
        for b in bindings
        if b.spec.role == "controlplane"
        for a in [address_of(servers.get(b.name))]
        if a is not None
    )
    if clustermemo.endpoints(value) != tuple(endpoints):
        doc = documents.load(value)
        doc["contexts"][doc["context"]]["endpoints"] = endpoints
        value = documents.dump(doc)
        await kube.patch(SECRETS, name, {"stringData": {TALOSCONFIG_KEY: value}}, cluster.namespace)
    return clustermemo.client_credentials(value)


async def member_config(
    state: Round,
    binding: ServerBinding,
    pool: str,
    config: str,
    listed: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Write the member's config Secret and return it as stored (None when a racing writer
    got there first; the next reconcile checks theirs): created when missing; rendered anew,
    with its records, when it was rendered for another binding, role or pool (an earlier
    membership's leftover); given the new rendering, keeping its records, when the pool's
    rendering changed (what a roll-out applies).

    ``listed``: the Secret as this reconcile listed it (:func:`listed_members`), taken as it
    is instead of a read (a write on a stale copy is refused with 409, and the next
    reconcile sees the newer one); when none was listed, the Secret is created, and read
    only if it exists after all (a leftover without the member labels).
    """
    kube, cluster = state.kube, state.cluster
    name = config_name(cluster.name, binding.name)
    labels, annotations, owners = metadata_for(binding, cluster.name, pool, config)
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": cluster.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": owners,
        },
        "type": "Opaque",
        "stringData": {CONFIG_KEY: config},
    }
    existing = listed if listed is not None and listed["metadata"]["name"] == name else None
    if existing is None:
        try:
            return await kube.create(SECRETS, body, cluster.namespace)
        except AlreadyExists:
            try:
                existing = await kube.get(SECRETS, name, cluster.namespace)
            except NotFound:
                return None
    record = record_of(existing)
    why = mismatch(record, binding)
    if why is None and not stale(record, config):
        return existing
    rv = existing["metadata"]["resourceVersion"]
    try:
        if why is not None:
            why_written = f"rendering {name} anew: {why}"
            body["metadata"]["resourceVersion"] = rv
            written = await kube.replace(SECRETS, body)
        else:
            why_written = f"{name}: the pool's rendering changed"
            written = await kube.patch(
                SECRETS,
                name,
                {
                    "metadata": {"resourceVersion": rv, "annotations": {DIGEST: digest(config)}},
                    "stringData": {CONFIG_KEY: config},
                },
                cluster.namespace,
            )
    except (Conflict, NotFound):
        return None
    log.info("%s/%s: %s", cluster.namespace, cluster.name, why_written)
    return written


CONFIGS_AT_ONCE = 16
"""Member config Secrets a reconcile writes at once (:func:`member_configs`)."""


async def member_configs(
    state: Round,
    bindings: list[ServerBinding],
    configs: dict[str, str],
    listed: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """:func:`member_config` for each binding of a pool ``configs`` renders (pool name to
    its config), :data:`CONFIGS_AT_ONCE` at a time; returns ``listed`` (the Secrets as the
    reconcile listed them, by server name) with what was written in their place.

    A cluster's members are Secrets of their own: one after another, a cluster of twenty
    held its reconcile for twenty round trips, and the fleet benchmark's clusters waited
    seconds for the controller's workers, almost all of it in API requests.

    Raises:
        KubeError: a write failed other than by losing a race (the rest of its batch is
            still written; a later reconcile writes what was not).
    """
    out = dict(listed)
    todo = [b for b in bindings if b.labels.get(POOL_LABEL, "") in configs]
    for start in range(0, len(todo), CONFIGS_AT_ONCE):
        batch = todo[start : start + CONFIGS_AT_ONCE]
        results = await asyncio.gather(
            *(
                member_config(
                    state, b, b.labels[POOL_LABEL], configs[b.labels[POOL_LABEL]], out.get(b.name)
                )
                for b in batch
            ),
            return_exceptions=True,
        )
        for binding, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            if result is not None:
                out[binding.name] = result
    return out


async def listed_members(kube: KubeClient, cluster: TalosCluster) -> list[dict[str, Any]]:
    """The cluster's member config Secrets as stored (one list request, by their labels)."""
    selector = f"{CLUSTER_LABEL}={cluster.name},{MEMBER_LABEL}"
    return await kube.list(SECRETS, cluster.namespace, label_selector=selector)


def by_server(secrets: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Member config Secrets (:func:`listed_members`) by the server they record."""
    out = {}
    for secret in secrets:
        server = record_of(secret).server
        if server:
            out[server] = secret
    return out


def rebooting(secret: dict[str, Any] | None) -> bool:
    """Whether the member's recorded roll-out step (in flight, not failed) reboots it or
    may: an upgrade, or a config change Talos applies with a reboot."""
    step = Step.from_text(record_of(secret).step) if secret is not None else None
    return step is not None and not step.failed and (step.reboots or not step.accepted)


async def record_step(
    kube: KubeClient,
    secret: dict[str, Any],
    step: Step | None,
    *,
    applied: str | None = None,
) -> dict[str, Any]:
    """Record ``step`` (None: none) on a member's config Secret, and with ``applied`` the
    config the member now runs; refused (Conflict) if the Secret changed since it was read,
    so two writers never both think they started a step. Returns the Secret as written."""
    meta = secret["metadata"]
    patch: dict[str, Any] = {
        "metadata": {
            "resourceVersion": meta["resourceVersion"],
            "annotations": {ROLLOUT_STEP: step.to_text() if step else None},
        }
    }
    if applied is not None:
        patch["metadata"]["annotations"][APPLIED_DIGEST] = digest(applied)
        patch["stringData"] = {APPLIED_KEY: applied}
    written: dict[str, Any] = await kube.patch(SECRETS, meta["name"], patch, meta["namespace"])
    return written


async def sweep(
    kube: KubeClient,
    cluster: TalosCluster,
    bindings: list[ServerBinding],
    listed: list[dict[str, Any]] | None = None,
) -> None:
    """Delete the member configs whose membership is over (a release cut short, a binding
    deleted by hand); their owner reference lets the garbage collector do the same, this
    does not wait for it.

    ``listed``: the member config Secrets as this reconcile listed them
    (:func:`listed_members`), instead of a second list. One deleted since is skipped
    (NotFound); each deletion is preconditioned on the listed uid, so a Secret created anew
    under the same name since is kept.
    """
    secrets = await listed_members(kube, cluster) if listed is None else listed
    uids = {s["metadata"]["name"]: s["metadata"].get("uid") for s in secrets}
    for name in orphans(secrets, bindings):
        log.info(
            "%s/%s: removing %s, left by an ended membership",
            cluster.namespace,
            cluster.name,
            name,
        )
        with contextlib.suppress(NotFound, Conflict):
            await kube.delete(SECRETS, name, cluster.namespace, uid=uids[name])


async def remove_all(kube: KubeClient, cluster: TalosCluster) -> None:
    """Delete the cluster's own Secrets (bundle, talosconfig, kubeconfig)."""
    for name in (
        secrets_name(cluster.name),
        talosconfig_name(cluster.name),
        kubeconfig_name(cluster.name),
    ):
        with contextlib.suppress(NotFound):
            await kube.delete(SECRETS, name, cluster.namespace)
