"""The Environment controller: assets fetched, verified, cached; Ready when servable.

Each Environment's kernel and initrd are fetched into the :class:`~arges.assets.AssetCache`
and checked against their sha512. ``Ready=True`` once both are in place; otherwise
``Ready=False`` with the reason (``FetchFailed``, ``ChecksumMismatch``, ``InvalidURL``) and
a message naming the URL, retried with a capped backoff, so an Environment whose URLs cannot
be reached (no network) stays visibly not ready instead of failing later at boot.

Built-in Environments (``default``, and ``agent`` once its image exists) are created at start
and annotated ``metal.arges.dev/built-in: "true"``: while the annotation is there Arges keeps
their spec in step with its configuration (so an upgrade moves them along, unlike Sidero's
frozen default); remove it to take one over.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from arges.api.environment import BUILT_IN, Environment, EnvironmentSpec
from arges.assets import AssetCache, AssetError
from arges.controllers.runtime import Body, Cache, Controller, Key, Watch, key_of
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, NotFound
from arges.kube.resources import ENVIRONMENTS
from arges.metal.conditions import set_condition

RETRY_CAP = 600.0


class EnvironmentController(Controller):
    """See the module docstring."""

    name = "environments"
    workers = 2

    def __init__(
        self,
        kube: KubeClient,
        cache: Cache,
        assets: AssetCache,
        built_ins: dict[str, EnvironmentSpec],
    ) -> None:
        super().__init__(kube, cache)
        self.assets = assets
        self.built_ins = built_ins
        self._attempts: dict[Key, int] = {}

    def watches(self) -> list[Watch]:
        def own(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [(self.name, key_of(body))]

        return [Watch(ENVIRONMENTS, own)]

    async def start(self) -> None:
        """Create the built-in Environments, or bring them in step (see
        :meth:`ensure_built_in`), before the first reconcile."""
        for name, spec in self.built_ins.items():
            await self.ensure_built_in(name, spec)

    async def ensure_built_in(self, name: str, spec: EnvironmentSpec) -> None:
        """Create the built-in ``name``, or bring its spec in step while it is still ours."""
        wanted = spec.to_json()
        try:
            current = await self.kube.get(ENVIRONMENTS, name)
        except NotFound:
            with contextlib.suppress(AlreadyExists):
                await self.kube.create(
                    ENVIRONMENTS,
                    {"metadata": {"name": name, "annotations": {BUILT_IN: "true"}}, "spec": wanted},
                )
            return
        annotations = current["metadata"].get("annotations") or {}
        if annotations.get(BUILT_IN) == "true" and current.get("spec") != wanted:
            current["spec"] = wanted
            await self.kube.replace(ENVIRONMENTS, current)

    async def reconcile(self, key: Key) -> float | None:
        body = self.cache.get(ENVIRONMENTS, key)
        if body is None:
            self.assets.remove(key)
            self._attempts.pop(key, None)
            return None
        env = Environment.from_json(body)
        status: dict[str, Any] = {}
        error: AssetError | None = None
        for asset, spec in (("kernel", env.spec.kernel), ("initrd", env.spec.initrd)):
            try:
                cached = await self.assets.ensure(key, asset, spec.url, spec.sha512)
            except AssetError as exc:
                error = exc
                break
            status[asset] = {"url": cached.url, "sha512": cached.sha512, "size": cached.size}
        now = dt.datetime.now(dt.UTC)
        generation = body["metadata"].get("generation")
        if error is None:
            conditions = set_condition(
                env.status.conditions,
                "Ready",
                "True",
                "AssetsVerified",
                "kernel and initrd are cached and verified",
                now=now,
                observed_generation=generation,
            )
        else:
            conditions = set_condition(
                env.status.conditions,
                "Ready",
                "False",
                error.reason,
                error.message,
                now=now,
                observed_generation=generation,
            )
        status["conditions"] = [c.to_json() for c in conditions]
        current = body.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()) or (
            error is not None and current.get("kernel") is not None
        ):
            status.setdefault("kernel", None)
            status.setdefault("initrd", None)
            await self.kube.patch(
                ENVIRONMENTS,
                key,
                {
                    "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                    "status": status,
                },
                subresource="status",
            )
        if error is None:
            self._attempts.pop(key, None)
            return None
        attempt = self._attempts.get(key, 0)
        self._attempts[key] = attempt + 1
        return float(min(RETRY_CAP, 5.0 * 2**attempt))
