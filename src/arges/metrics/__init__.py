"""Prometheus metrics of one management plane (:class:`~arges.metrics.registry.Metrics`).

Each plane owns its registry: tests run several planes in one process, and the global
default registry would mix their numbers (and refuse the second plane's metrics).
"""

from arges.metrics.registry import Metrics

__all__ = ["Metrics"]
