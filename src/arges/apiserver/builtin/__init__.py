"""Built-in kinds: Namespace, Secret, ConfigMap, Event (core/v1) and Lease (coordination/v1).

Each kind is a :class:`~arges.apiserver.resources.ResourceType` with a structural schema
(which does for pruning, validation, ``kubectl explain`` and OpenAPI what Go structs do in
kube-apiserver), its printer columns (kube's ``pkg/printers/internalversion``), and a
:class:`~arges.apiserver.resources.Strategy` for the rules in ``pkg/registry/core/*/strategy.go``.
One module per kind or pair of kinds: :mod:`.namespaces`, :mod:`.configuration` (Secret and
ConfigMap), :mod:`.events`, :mod:`.leases`, on :mod:`.strategy`; their shared schemas are
:mod:`arges.apiserver.metaschema`. The CustomResourceDefinition kind lives in
:mod:`arges.apiserver.crd`.
"""

from __future__ import annotations

from arges.apiserver.builtin.configuration import configmap_type, secret_type
from arges.apiserver.builtin.events import event_type
from arges.apiserver.builtin.leases import lease_type
from arges.apiserver.builtin.namespaces import namespace_type
from arges.apiserver.resources import ResourceType


def builtin_types() -> list[ResourceType]:
    """The built-in kinds, except CustomResourceDefinition (see :mod:`~arges.apiserver.crd`)."""
    return [namespace_type(), secret_type(), configmap_type(), event_type(), lease_type()]
