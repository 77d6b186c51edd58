"""What one reconcile of a TalosCluster knows and decides, folded into its status at the end."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from arges.api.base import Condition, ConditionStatus
from arges.api.cluster import TalosCluster
from arges.kube.client import KubeClient
from arges.metal.conditions import set_condition

CONFIG_VALID = "ConfigValid"
INSUFFICIENT = "InsufficientServers"
BOOTSTRAPPED = "Bootstrapped"
KUBECONFIG = "KubeconfigAvailable"
SCALE_DOWN = "ScaleDown"
UP_TO_DATE = "UpToDate"
MEMBER_UNHEALTHY = "MemberUnhealthy"


@dataclass
class Round:
    """One reconcile of ``cluster``: its conditions as they are being decided (``now`` is
    their transition time), the generation they observe, and whether to look again soon."""

    kube: KubeClient
    cluster: TalosCluster
    conditions: list[Condition]
    now: dt.datetime
    generation: int | None
    requeue: bool = False

    def set(self, kind: str, status: ConditionStatus, reason: str, message: str) -> None:
        """Set condition ``kind`` (its transition time moves only with its status)."""
        self.conditions = set_condition(
            self.conditions,
            kind,
            status,
            reason,
            message,
            now=self.now,
            observed_generation=self.generation,
        )

    def clear(self, kind: str) -> None:
        """Drop condition ``kind``."""
        self.conditions = [c for c in self.conditions if c.type != kind]

    async def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        """An Event about the cluster (a courtesy: never raises)."""
        await self.kube.event(
            self.cluster.to_json(), reason, message, type="Warning" if warning else "Normal"
        )
