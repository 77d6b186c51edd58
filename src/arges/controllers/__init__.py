"""Arges' controllers: level-triggered reconcilers over the Kubernetes API (see ``runtime``)."""
