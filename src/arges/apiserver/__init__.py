"""An embedded, Kubernetes-compatible API server backed by SQLite (see ``server``)."""
