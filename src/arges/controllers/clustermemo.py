"""What a TalosCluster reconcile derives from inputs that rarely change, derived once.

A reconcile reads the cluster's secrets bundle and talosconfig (YAML with keys and
certificates), renders each pool's machine config (tens of ms) and builds a Talos API client
(an mTLS context: 20 ms). A cluster is reconciled after every change of its members, so
during provisioning that was most of the controllers' CPU. The inputs are immutable values or
carry their own version (a cluster's generation changes with its spec; the bundle never
changes once written; a talosconfig changes only with its text), so their results are kept,
keyed by those inputs, in bounded memos.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from arges.talos import documents
from arges.talos.secrets import SecretsBundle
from arges.talos.talosconfig import ClientCredentials, credentials

V = TypeVar("V")


@functools.lru_cache(maxsize=256)
def bundle(text: str) -> SecretsBundle:
    """The secrets bundle in ``text`` (see :meth:`SecretsBundle.from_yaml`; not to mutate).

    Raises:
        InvalidSecrets: as :meth:`SecretsBundle.from_yaml`.
    """
    return SecretsBundle.from_yaml(text)


@functools.lru_cache(maxsize=256)
def client_credentials(text: str) -> ClientCredentials:
    """The credentials of the talosconfig ``text`` (see :func:`credentials`).

    Raises:
        InvalidSecrets: as :func:`credentials`.
    """
    return credentials(text)


@functools.lru_cache(maxsize=256)
def endpoints(text: str) -> tuple[str, ...] | None:
    """The endpoints of the talosconfig ``text``'s current context (None when unset)."""
    doc: Any = documents.load(text)
    found = doc["contexts"][doc["context"]].get("endpoints")
    return None if found is None else tuple(found)


class Memo(Generic[V]):
    """Values by key, the ``size`` most recently used kept."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._values: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value for ``key``, made by ``make()`` when not kept (exceptions pass)."""
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        value = make()
        self._values[key] = value
        if len(self._values) > self.size:
            self._values.popitem(last=False)
        return value
