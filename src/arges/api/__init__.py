"""Arges' resource types: typed models that are the single source of their CRDs."""
