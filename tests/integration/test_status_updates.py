"""``KubeClient.update_status`` given the object as the caller already has it: one write when
that copy is current, and nothing lost when it is not (the write is refused and redone)."""

from __future__ import annotations

from typing import Any

from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.resources import NAMESPACES
from tests.integration.conftest import Cluster


def condition(kind: str) -> Any:
    def change(obj: dict[str, Any]) -> dict[str, Any] | None:
        conditions = (obj.get("status") or {}).get("conditions") or []
        if any(c["type"] == kind for c in conditions):
            return None
        return {"conditions": [*conditions, {"type": kind, "status": "True"}]}

    return change


async def test_a_current_copy_saves_the_read_and_a_stale_one_loses_nothing(
    cluster: Cluster,
) -> None:
    async with KubeClient(from_kubeconfig(cluster.server.kubeconfig_path)) as kube:
        calls: list[str] = []
        request = kube.request

        async def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(method)
            return await request(method, path, *args, **kwargs)

        kube.request = counted  # type: ignore[method-assign]
        await kube.create(NAMESPACES, {"metadata": {"name": "n"}})
        fresh = await kube.get(NAMESPACES, "n")
        calls.clear()
        after_a = await kube.update_status(NAMESPACES, "n", condition("A"), current=fresh)
        assert calls == ["PATCH"]

        # ``fresh`` no longer is: B is written on the object as it was before A.
        calls.clear()
        after_b = await kube.update_status(NAMESPACES, "n", condition("B"), current=fresh)
        assert calls == ["PATCH", "GET", "PATCH"]  # refused (409), read, written
        kinds = [c["type"] for c in after_b["status"]["conditions"]]
        assert kinds == ["A", "B"]
        assert after_b["metadata"]["resourceVersion"] != after_a["metadata"]["resourceVersion"]

        # Nothing to write in the copy given: no request at all.
        calls.clear()
        assert await kube.update_status(NAMESPACES, "n", condition("B"), current=after_b) == after_b
        assert calls == []
