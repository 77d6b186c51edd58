"""The TalosCluster controller, by concern: the reconcile's order (:mod:`.controller`),
membership and scaling (:mod:`.membership`), the Talos API observations (:mod:`.observe`),
bootstrap and kubeconfig (:mod:`.bootstrap`), the Secrets a cluster owns (:mod:`.owned`),
roll-outs (:mod:`.rollout`) and the status (:mod:`.status`); the decisions themselves are
pure functions in :mod:`arges.metal.clusters` and :mod:`arges.metal.rollout`."""

from arges.controllers.clusters.controller import TalosClusterController

__all__ = ["TalosClusterController"]
