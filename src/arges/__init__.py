"""Arges: a bare-metal Kubernetes management plane (discovery, power, Talos clusters)."""

__version__ = "0.1.0"
