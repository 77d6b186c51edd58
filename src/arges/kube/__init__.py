"""The one place that talks to the Kubernetes API (embedded or real) for Arges' own calls."""
