"""Kubernetes REST semantics over the store: create, get, list, update, patch, delete.

This is kube-apiserver's generic registry (``k8s.io/apiserver/pkg/registry/generic/registry``)
for the kinds this server knows, in the order it works:

- decode and check the object (apiVersion and kind match the URL, name and namespace too);
- prune unknown fields (``fieldValidation``: Ignore, Warn (default) or Strict), apply defaults;
- fill system metadata (uid, creationTimestamp, generation) and apply the kind's strategy
  (status is a subresource; namespaces own their status; secrets fold stringData);
- record who owns which fields (``metadata.managedFields``, :mod:`~arges.apiserver.
  managedfields`), or merge an applied configuration (server-side apply,
  :mod:`~arges.apiserver.apply`);
- call the mutating admission webhooks (:mod:`~arges.apiserver.admission`) before validation
  and the validating ones after it;
- validate (metadata, schema, kind rules) and answer 422 with every cause;
- write through the store with optimistic concurrency: an update that names a
  resourceVersion other than the stored one gets 409; one that names none is retried on
  races (``GuaranteedUpdate``); an update that changes nothing writes nothing;
- deletion honours finalizers (``deletionTimestamp`` first, removal when they are gone),
  preconditions, and the propagation policies that the garbage collector then carries out.

Objects are stored at their resource's storage version and served at the version asked for,
converted by the CRD's conversion (:mod:`~arges.apiserver.conversion`): reads and writes at
another version than the stored one call a conversion webhook when the CRD has one (a list is
one call), and only relabel ``apiVersion`` otherwise.
"""

from __future__ import annotations

from arges.apiserver.rest.deletes import Deletes
from arges.apiserver.rest.writes import Writes


class Rest(Writes, Deletes):
    """The REST operations of every resource (see the module docstring): reading
    (:mod:`.reads`), writing (:mod:`.writes`, checked by :mod:`.checks`) and deleting
    (:mod:`.deletes`), with their options in :mod:`.options`."""
