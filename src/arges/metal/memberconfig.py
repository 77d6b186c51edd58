"""A cluster member's config Secret: what it was rendered for, and whether it may be served.

The TalosCluster controller writes each member's machine config into a Secret
(``<cluster>-config-<server>``) that records what it was rendered for:

- labels ``cluster.arges.dev/cluster-name``, ``cluster.arges.dev/pool`` and
  ``cluster.arges.dev/member`` (the server), so a cluster's member configs are one label
  selector away;
- annotations ``cluster.arges.dev/binding-uid`` (the ServerBinding whose membership it
  belongs to), ``cluster.arges.dev/role`` and ``cluster.arges.dev/config-digest`` (SHA-256 of
  the pool's rendered config, before the ServerClass's and Server's patches);
- an owner reference to that ServerBinding, so the API server's garbage collector removes it
  when the membership ends, however it ends.

A binding's uid changes with every allocation, so a Secret left over from an earlier
membership of the same server (a kill between the release's two deletes, a binding deleted by
hand) never matches the new binding: :func:`mismatch` says why, the controller renders it
anew, and the metadata service refuses to serve it meanwhile.

Within one membership the Secret also records what the running member got, for roll-outs
(:mod:`arges.metal.rollout`):

- key ``config`` is re-rendered whenever the pool's rendering changes (its digest no longer
  matches): that is what a member that boots afresh fetches, and what a roll-out applies;
- key ``applied`` (with annotation ``cluster.arges.dev/applied-digest``) is the whole config
  Arges last applied to the running member through ApplyConfiguration, the ServerClass's and
  Server's patches included; absent until the first one;
- annotation ``cluster.arges.dev/rollout-step`` is the roll-out step in flight or failed on
  the member (:class:`arges.metal.rollout.Step`), written before the step is started.

Pure functions on plain JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from arges.api.binding import ServerBinding

CLUSTER_LABEL = "cluster.arges.dev/cluster-name"
POOL_LABEL = "cluster.arges.dev/pool"
MEMBER_LABEL = "cluster.arges.dev/member"
BINDING_UID = "cluster.arges.dev/binding-uid"
ROLE = "cluster.arges.dev/role"
DIGEST = "cluster.arges.dev/config-digest"
APPLIED_DIGEST = "cluster.arges.dev/applied-digest"
ROLLOUT_STEP = "cluster.arges.dev/rollout-step"
APPLIED_KEY = "applied"
RENDERER_KIND = "TalosCluster"
"""The consumer kind whose bindings point at configs rendered this way."""


@dataclass(frozen=True)
class Record:
    """What a config Secret says it was rendered for (None where it says nothing)."""

    cluster: str | None
    server: str | None
    pool: str | None
    role: str | None
    binding_uid: str | None
    digest: str | None
    applied_digest: str | None = None
    step: str | None = None


def digest(config: str) -> str:
    """``sha256:<hex>`` of a rendered config (YAML text)."""
    return "sha256:" + hashlib.sha256(config.encode()).hexdigest()


def record_of(secret: dict[str, Any]) -> Record:
    """The record of a Secret (as the API returns it)."""
    meta = secret.get("metadata") or {}
    labels = meta.get("labels") or {}
    notes = meta.get("annotations") or {}
    return Record(
        cluster=labels.get(CLUSTER_LABEL),
        server=labels.get(MEMBER_LABEL),
        pool=labels.get(POOL_LABEL),
        role=notes.get(ROLE),
        binding_uid=notes.get(BINDING_UID),
        digest=notes.get(DIGEST),
        applied_digest=notes.get(APPLIED_DIGEST),
        step=notes.get(ROLLOUT_STEP),
    )


def metadata_for(
    binding: ServerBinding, cluster: str, pool: str, config: str
) -> tuple[dict[str, str], dict[str, str], list[dict[str, Any]]]:
    """Labels, annotations and owner references of the config Secret of ``binding``,
    rendered as ``config`` for ``pool`` of ``cluster``."""
    labels = {CLUSTER_LABEL: cluster, POOL_LABEL: pool, MEMBER_LABEL: binding.name}
    annotations = {
        BINDING_UID: str(binding.metadata.get("uid") or ""),
        ROLE: binding.spec.role or "worker",
        DIGEST: digest(config),
    }
    owners = [
        {
            "apiVersion": binding.api_version,
            "kind": binding.kind,
            "name": binding.name,
            "uid": binding.metadata.get("uid"),
        }
    ]
    return labels, annotations, owners


def mismatch(record: Record, binding: ServerBinding) -> str | None:
    """Why a config Secret does not belong to ``binding`` (None when it does).

    It belongs when it names the binding's uid, server, pool and role; a Secret that names
    nothing (written before these records existed) does not.
    """
    uid = binding.metadata.get("uid")
    pool = binding.labels.get(POOL_LABEL)
    role = binding.spec.role or "worker"
    if record.binding_uid is None:
        return "it does not say which binding it was rendered for"
    if record.binding_uid != uid:
        return f"it was rendered for an earlier binding ({record.binding_uid}), not {uid}"
    if record.server is not None and record.server != binding.name:
        return f"it was rendered for server {record.server}"
    if pool is not None and record.pool != pool:
        return f"it was rendered for pool {record.pool}, not {pool}"
    if record.role != role:
        return f"it was rendered as {record.role}, not {role}"
    return None


def stale(record: Record, config: str) -> bool:
    """Whether a Secret that belongs to its membership holds an older rendering than
    ``config`` (the pool's rendering changed: it is rendered anew, its records kept)."""
    return record.digest != digest(config)


def serve_problem(secret: dict[str, Any], binding: ServerBinding) -> str | None:
    """Why the metadata service must not serve ``secret`` as ``binding``'s config (None: it
    may). Configs of TalosCluster members, and any Secret that records a binding, must
    belong to this binding; other consumers' Secrets (bootstrap data) record nothing."""
    record = record_of(secret)
    if binding.spec.consumer_ref.kind != RENDERER_KIND and record.binding_uid is None:
        return None
    return mismatch(record, binding)


def orphans(secrets: Iterable[dict[str, Any]], bindings: Iterable[ServerBinding]) -> list[str]:
    """Names of the member config Secrets (of one cluster) whose membership is over: the
    binding they record is not among the cluster's current ``bindings``."""
    current = {str(b.metadata.get("uid")) for b in bindings}
    out = []
    for secret in secrets:
        record = record_of(secret)
        if record.server is not None and record.binding_uid not in current:
            out.append(str(secret["metadata"]["name"]))
    return sorted(out)
