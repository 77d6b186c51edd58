"""Models parsed from the watch cache once per resourceVersion, shared by every controller.

Parsing a Server with its inventory into its pydantic model costs about 100 µs. Controllers
that look at every Server (ServerClass membership, a TalosCluster's allocation) did it on each
reconcile, so a fleet of 2,000 Servers cost 0.2 s of parsing per reconcile, and reconciles
follow every Server change: the cost of one change grew with the fleet. Here each object is
parsed once per resourceVersion, whichever controller asks first, and the parse is kept until
the object changes or goes. Models are shared: callers must not mutate them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from arges.api.base import Object
from arges.controllers.runtime import Body, Cache, Key
from arges.kube.resources import Resource

M = TypeVar("M", bound=Object)


class Parsed(Generic[M]):
    """The ``model`` view of one resource in a :class:`Cache` (see the module docstring)."""

    def __init__(self, cache: Cache, resource: Resource, model: type[M]) -> None:
        self.cache = cache
        self.resource = resource
        self.model = model
        self._models: dict[Key, tuple[str, M]] = {}

    def _parse(self, key: Key, body: Body) -> M:
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        held = self._models.get(key)
        if held is not None and held[0] == rv and rv:
            return held[1]
        parsed = self.model.from_json(body)
        self._models[key] = (rv, parsed)
        return parsed

    def get(self, key: Key) -> M | None:
        """The object ``key`` as last observed, or None.

        Raises:
            pydantic.ValidationError: the cached body does not fit the model.
        """
        body = self.cache.get(self.resource, key)
        if body is None:
            self._models.pop(key, None)
            return None
        return self._parse(key, body)

    def all(self) -> dict[Key, M]:
        """Every object of the resource as last observed, by key.

        Raises:
            pydantic.ValidationError: a cached body does not fit the model.
        """
        keys = self.cache.names(self.resource)
        if len(self._models) > len(keys):
            present = set(keys)
            for gone in [k for k in self._models if k not in present]:
                del self._models[gone]
        out: dict[Key, M] = {}
        for key in keys:
            body = self.cache.get(self.resource, key)
            if body is not None:
                out[key] = self._parse(key, body)
        return out

    def lazy(self) -> LazyModels[M]:
        """Every object of the resource, by key, each parsed only when looked up (see
        :class:`LazyModels`): for a reconcile that reads a few objects of many, where
        :meth:`all` would look at every one."""
        return LazyModels(self)


class LazyModels(Mapping[Key, M]):
    """A :class:`Parsed` resource as a mapping of key to model, for one reconcile.

    The keys are the cache's when iterated. An object is parsed when first looked up (from
    the cache as it is then) and the same model is answered for it from then on, as a
    reconcile's dictionary of :meth:`Parsed.all` would: a TalosCluster's reconcile reads its
    own members and, when it grows, the candidates it tries, and with :meth:`Parsed.all` it
    looked at every Server of the fleet (and parsed each that had changed) on every reconcile.

    Raises (on lookup):
        KeyError: no such object (``get`` answers None).
        pydantic.ValidationError: the cached body does not fit the model.
    """

    def __init__(self, parsed: Parsed[M]) -> None:
        self._parsed = parsed
        self._held: dict[Key, M] = {}

    def __getitem__(self, key: Key) -> M:
        model = self._held.get(key)
        if model is None:
            model = self._parsed.get(key)
            if model is None:
                raise KeyError(key)
            self._held[key] = model
        return model

    def __iter__(self) -> Iterator[Key]:
        return iter(self._parsed.cache.names(self._parsed.resource))

    def __len__(self) -> int:
        return len(self._parsed.cache.names(self._parsed.resource))


_SHARED: weakref.WeakKeyDictionary[Cache, dict[Resource, Parsed[Object]]] = (
    weakref.WeakKeyDictionary()
)


def parsed(cache: Cache, resource: Resource, model: type[M]) -> Parsed[M]:
    """The one :class:`Parsed` view of ``resource`` in ``cache`` as ``model``, shared by all
    controllers of that cache (one model per resource)."""
    views = _SHARED.setdefault(cache, {})
    view = views.get(resource)
    if view is None or view.model is not model:
        view = Parsed(cache, resource, model)
        views[resource] = view
    return view  # type: ignore[return-value]
