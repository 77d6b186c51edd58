"""The Constellation controller: one TalosCluster per member, with its add-ons rendered in.

Per Constellation, level-triggered (every step reads the current state and is safe to repeat;
it writes only through the API, and nothing but TalosClusters and its own Secrets):

1. the spec is checked (:func:`arges.metal.constellation.problems`); an unusable one is
   condition ``Valid=False`` naming each problem, and nothing is written;
2. with a ClusterMesh, the shared Cilium CA is generated once (Secret ``<name>-cilium-ca``,
   keys ``ca.crt`` and ``ca.key``) and never regenerated;
3. each member's add-ons are rendered (:mod:`arges.metal.addons.render`), with the DNS
   credentials read from the Secrets the spec names (a missing Secret or key is
   ``Valid=False``, retried);
4. the credentials-bearing patch of each member goes into Secret ``<member>-addons`` (key
   ``patch``), and the member's TalosCluster (named after it, owned by the Constellation,
   labelled ``cluster.arges.dev/constellation``) is created or brought in step: the
   member's spec plus the add-on patches, the Secret in its control plane's ``patchesFrom``,
   and that patch's digest as annotation ``cluster.arges.dev/addons-digest`` (so a change of
   credentials reaches the TalosCluster controller); a TalosCluster of that name that is not
   this Constellation's is left alone (condition ``MembersCreated=False``);
5. members removed from the spec lose their TalosCluster (which releases its servers) and
   their Secret;
6. the status: every member's phase, endpoints and declared add-ons, the ClusterMesh wiring
   and the anycast address.

Deleting a Constellation deletes its TalosClusters and Secrets through their owner
references (each TalosCluster releases its servers first).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import logging
from typing import Any

import yaml

from arges.api.base import Condition
from arges.api.cluster import TalosClusterSpec
from arges.api.constellation import Constellation, ConstellationMember, MemberRole
from arges.controllers.runtime import Body, Cache, Controller, Key, Watch, key_of
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, Conflict, NotFound
from arges.kube.resources import CONSTELLATIONS, SECRETS, TALOS_CLUSTERS
from arges.metal.addons import cilium
from arges.metal.addons.render import Context, MemberAddons, render_member
from arges.metal.addons.versions import HELM_IMAGE
from arges.metal.conditions import set_condition
from arges.metal.constellation import (
    ADDON_SECRET_KEY,
    CONSTELLATION_LABEL,
    ROLE_LABEL,
    addon_secret_name,
    ca_secret_name,
    members,
    mesh,
    problems,
    status,
    talos_cluster_spec,
)

log = logging.getLogger(__name__)

DIGEST_ANNOTATION = "cluster.arges.dev/addons-digest"
VALID = "Valid"
MEMBERS_CREATED = "MembersCreated"


class ConstellationController(Controller):
    """See the module docstring."""

    name = "constellations"
    workers = 2

    def __init__(self, kube: KubeClient, cache: Cache, *, recheck: float = 30.0) -> None:
        super().__init__(kube, cache)
        self.recheck = recheck

    def watches(self) -> list[Watch]:
        def own(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [(self.name, key_of(body))]

        def member(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            meta = body.get("metadata") or {}
            owner = (meta.get("labels") or {}).get(CONSTELLATION_LABEL)
            return [(self.name, f"{meta.get('namespace')}/{owner}")] if owner else []

        return [Watch(CONSTELLATIONS, own), Watch(TALOS_CLUSTERS, member)]

    async def reconcile(self, key: Key) -> float | None:
        if self.cache.get(CONSTELLATIONS, key) is None:
            return None
        namespace, _, name = key.partition("/")
        try:
            body = await self.kube.get(CONSTELLATIONS, name, namespace)
        except NotFound:
            return None
        if body["metadata"].get("deletionTimestamp"):
            return None
        constellation = Constellation.from_json(body)
        spec = constellation.spec
        now = dt.datetime.now(dt.UTC)
        generation = body["metadata"].get("generation")
        conditions = list(constellation.status.conditions or [])

        def condition(kind: str, value: bool, reason: str, message: str) -> None:
            nonlocal conditions
            conditions = set_condition(
                conditions,
                kind,
                "True" if value else "False",
                reason,
                message,
                now=now,
                observed_generation=generation,
            )

        found = problems(spec)
        if found:
            condition(VALID, False, "InvalidSpec", "; ".join(found))
            await self._write_status(body, {"phase": "Failed"}, conditions, generation)
            return None
        ca = await self._ca(constellation, now) if mesh(spec) else None
        context = Context(
            constellation=constellation.name,
            anycast=spec.anycast,
            mesh=tuple(mesh(spec)),
            helm_image=spec.helm_image or HELM_IMAGE,
            cilium_ca=ca,
            credentials=await self._credentials(constellation),
        )
        try:
            rendered = {m.name: render_member(m, role, context) for role, m in members(spec)}
        except ValueError as exc:
            condition(VALID, False, "CannotRender", str(exc))
            await self._write_status(body, {"phase": "Failed"}, conditions, generation)
            return self.recheck
        condition(VALID, True, "Rendered", "every member's add-ons render")
        clusters: dict[str, dict[str, Any]] = {}
        refused: list[str] = []
        for role, member in members(spec):
            await self._addon_secret(constellation, member, rendered[member.name])
            cluster = await self._talos_cluster(constellation, role, member, rendered[member.name])
            if cluster is None:
                refused.append(member.name)
            else:
                clusters[member.name] = cluster
        await self._prune(constellation, {m.name for _, m in members(spec)})
        if refused:
            condition(
                MEMBERS_CREATED,
                False,
                "NameTaken",
                f"TalosCluster(s) {', '.join(refused)} exist and are not this Constellation's",
            )
        else:
            condition(MEMBERS_CREATED, True, "Created", "every member has its TalosCluster")
        observed = status(
            spec,
            clusters,
            ca_secret=ca_secret_name(constellation.name) if ca else None,
            ca_fingerprint=cilium.fingerprint(ca[0]) if ca else None,
        )
        await self._write_status(body, observed, conditions, generation)
        return self.recheck

    # Secrets

    def _owner(self, constellation: Constellation) -> dict[str, Any]:
        return {
            "apiVersion": constellation.api_version,
            "kind": constellation.kind,
            "name": constellation.name,
            "uid": constellation.metadata.get("uid"),
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def _labels(self, constellation: Constellation) -> dict[str, str]:
        return {CONSTELLATION_LABEL: constellation.name}

    async def _ca(self, constellation: Constellation, now: dt.datetime) -> tuple[str, str]:
        """The shared Cilium CA (PEM certificate, key), created once."""
        name = ca_secret_name(constellation.name)
        try:
            data = (await self.kube.get(SECRETS, name, constellation.namespace)).get("data") or {}
            return _decode(data["ca.crt"]), _decode(data["ca.key"])
        except (NotFound, KeyError):
            pass
        crt, key = cilium.new_ca(constellation.name, now)
        body = {
            "metadata": {
                "name": name,
                "labels": self._labels(constellation),
                "ownerReferences": [self._owner(constellation)],
            },
            "type": "Opaque",
            "stringData": {"ca.crt": crt, "ca.key": key},
        }
        try:
            await self.kube.create(SECRETS, body, constellation.namespace)
        except AlreadyExists:
            # A racing reconcile wrote it first: its CA is the one.
            data = (await self.kube.get(SECRETS, name, constellation.namespace)).get("data") or {}
            return _decode(data["ca.crt"]), _decode(data["ca.key"])
        log.info("%s/%s: created the shared Cilium CA", constellation.namespace, constellation.name)
        return crt, key

    async def _credentials(self, constellation: Constellation) -> dict[str, dict[str, str]]:
        """The data (base64) of each credentials Secret the spec names that exists."""
        names = {
            m.addons.external_dns.credentials_secret_ref.name
            for _, m in members(constellation.spec)
            if m.addons.external_dns is not None
        }
        out = {}
        for secret in sorted(names):
            with contextlib.suppress(NotFound):
                body = await self.kube.get(SECRETS, secret, constellation.namespace)
                out[secret] = dict(body.get("data") or {})
        return out

    async def _addon_secret(
        self, constellation: Constellation, member: ConstellationMember, rendered: MemberAddons
    ) -> None:
        """Write (or remove) the member's credentials-bearing patch Secret."""
        name = addon_secret_name(member.name)
        namespace = constellation.namespace
        try:
            existing: dict[str, Any] | None = await self.kube.get(SECRETS, name, namespace)
        except NotFound:
            existing = None
        if rendered.secret_patch is None:
            if existing is not None:
                with contextlib.suppress(NotFound):
                    await self.kube.delete(SECRETS, name, namespace)
            return
        text = yaml.safe_dump(rendered.secret_patch, sort_keys=False)
        encoded = base64.b64encode(text.encode()).decode()
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": self._labels(constellation),
                "ownerReferences": [self._owner(constellation)],
            },
            "type": "Opaque",
            "data": {ADDON_SECRET_KEY: encoded},
        }
        if existing is None:
            with contextlib.suppress(AlreadyExists):
                await self.kube.create(SECRETS, body, namespace)
            return
        if (existing.get("data") or {}).get(ADDON_SECRET_KEY) == encoded:
            return
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        with contextlib.suppress(Conflict):
            await self.kube.replace(SECRETS, body)

    # Members

    async def _talos_cluster(
        self,
        constellation: Constellation,
        role: MemberRole,
        member: ConstellationMember,
        rendered: MemberAddons,
    ) -> dict[str, Any] | None:
        """The member's TalosCluster, created or brought in step; None when that name is
        taken by a TalosCluster that is not this Constellation's."""
        namespace = constellation.namespace
        spec = talos_cluster_spec(member, rendered)
        digest = _digest(rendered.secret_patch)
        labels = {**self._labels(constellation), ROLE_LABEL: role}
        try:
            existing = await self.kube.get(TALOS_CLUSTERS, member.name, namespace)
        except NotFound:
            body = {
                "metadata": {
                    "name": member.name,
                    "labels": labels,
                    "annotations": {DIGEST_ANNOTATION: digest},
                    "ownerReferences": [self._owner(constellation)],
                },
                "spec": spec,
            }
            try:
                created = await self.kube.create(TALOS_CLUSTERS, body, namespace)
            except AlreadyExists:
                return None
            log.info("%s/%s: created TalosCluster %s", namespace, constellation.name, member.name)
            await self.kube.event(
                constellation.to_json(), "MemberCreated", f"created TalosCluster {member.name}"
            )
            return created
        meta = existing["metadata"]
        owners = meta.get("ownerReferences") or []
        if not any(o.get("uid") == constellation.metadata.get("uid") for o in owners):
            return None
        same_spec = _normal(existing.get("spec")) == _normal(spec)
        annotations = dict(meta.get("annotations") or {})
        if same_spec and annotations.get(DIGEST_ANNOTATION) == digest:
            return existing
        annotations[DIGEST_ANNOTATION] = digest
        meta["annotations"] = annotations
        meta["labels"] = {**(meta.get("labels") or {}), **labels}
        existing["spec"] = spec
        try:
            return await self.kube.replace(TALOS_CLUSTERS, existing)
        except Conflict:
            # Changed meanwhile (its controller's finalizer, a person): the next reconcile.
            return existing

    async def _prune(self, constellation: Constellation, names: set[str]) -> None:
        """Remove the TalosClusters and Secrets of members no longer in the spec."""
        namespace = constellation.namespace
        selector = f"{CONSTELLATION_LABEL}={constellation.name}"
        uid = constellation.metadata.get("uid")
        for cluster in await self.kube.list(TALOS_CLUSTERS, namespace, label_selector=selector):
            meta = cluster["metadata"]
            owned = any(o.get("uid") == uid for o in meta.get("ownerReferences") or [])
            if owned and meta["name"] not in names and not meta.get("deletionTimestamp"):
                log.info("%s/%s: removing member %s", namespace, constellation.name, meta["name"])
                with contextlib.suppress(NotFound):
                    await self.kube.delete(TALOS_CLUSTERS, meta["name"], namespace)
        wanted = {addon_secret_name(n) for n in names} | {ca_secret_name(constellation.name)}
        for secret in await self.kube.list(SECRETS, namespace, label_selector=selector):
            if secret["metadata"]["name"] not in wanted:
                with contextlib.suppress(NotFound):
                    await self.kube.delete(SECRETS, secret["metadata"]["name"], namespace)

    async def _write_status(
        self,
        body: Body,
        fields: dict[str, Any],
        conditions: list[Condition],
        generation: int | None,
    ) -> None:
        wanted = {
            **fields,
            "observedGeneration": generation,
            "conditions": [c.to_json() for c in conditions],
        }
        current = body.get("status") or {}
        if all(current.get(k) == v for k, v in wanted.items()):
            return
        meta = body["metadata"]
        with contextlib.suppress(NotFound):
            await self.kube.patch(
                CONSTELLATIONS,
                meta["name"],
                {"status": wanted},
                meta["namespace"],
                subresource="status",
            )


def _decode(value: str) -> str:
    return base64.b64decode(value).decode()


def _digest(patch: dict[str, Any] | None) -> str:
    text = yaml.safe_dump(patch, sort_keys=True) if patch is not None else ""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _normal(spec: Any) -> dict[str, Any]:
    """A TalosCluster spec with its defaults filled in, for comparison."""
    return TalosClusterSpec.from_json(spec or {}).to_json() if spec else {}
