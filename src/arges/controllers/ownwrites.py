"""A controller's own last writes, as a fresher copy than its watch cache's.

A controller that writes an object twice in one reconcile (a power cycle recorded, then the
BMC's answer) would make its second write on the cache's copy, which its watch has not yet
brought up to date with the first: that write is refused (409), read again and sent again,
three requests where one does. client-go's ``MutationCache`` answers the same need: it keeps
the objects its updates returned and serves them while the informer is behind.

Here the rule needs no ordering of resourceVersions (opaque, by the Kubernetes API
conventions): a write's result is preferred only while the cache still holds the very version
that write replaced. Once the cache holds anything else (the write itself, or another writer's
later change), the cache's copy is used again. A wrong guess costs what the cache's copy
would have: the write carries the resourceVersion it was computed on and is refused if that is
stale.
"""

from __future__ import annotations

from arges.controllers.runtime import Body, Key


def _version(obj: Body) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class OwnWrites:
    """Per object name, the version a write replaced and the object that write returned."""

    def __init__(self) -> None:
        self._written: dict[Key, tuple[str, Body]] = {}

    def current(self, name: Key, cached: Body | None) -> Body | None:
        """The copy to write on: the last write's result while ``cached`` (the watch cache's
        copy, None when it has none) is still the version that write replaced, else
        ``cached``."""
        own = self._written.get(name)
        if own is None or cached is None:
            return cached
        replaced, written = own
        if _version(cached) == replaced:
            return written
        # The cache has moved on: it now knows as much as the write, or more.
        del self._written[name]
        return cached

    def wrote(self, name: Key, based_on: Body | None, written: Body) -> None:
        """Record that a write computed on ``based_on`` returned ``written`` (nothing is kept
        when there was no copy to start from or nothing was written)."""
        if based_on is None or _version(written) == _version(based_on):
            return
        self._written[name] = (_version(based_on), written)

    def forget(self, name: Key) -> None:
        """Drop what is kept of ``name`` (the object is gone)."""
        self._written.pop(name, None)
