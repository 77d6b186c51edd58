"""Watch streams: the events a ``?watch=true`` request sees, from where it asks to start.

Start points follow the Kubernetes API concepts ("Efficient detection of changes",
"Semantics for watch"):

- no ``resourceVersion`` (or ``"0"``): one synthetic ``ADDED`` per existing object, then
  every change after that state;
- ``resourceVersion=N``: every change after revision N, replayed from the durable change
  log, so a client that reconnects after a server restart neither misses nor repeats an
  event; N older than the retained history yields an ``ERROR`` event with a 410 ``Expired``
  Status (what client-go and kopf expect, to relist);
- ``sendInitialEvents=true`` (with ``resourceVersionMatch=NotOlderThan``): synthetic ``ADDED``
  events, then a ``BOOKMARK`` annotated ``k8s.io/initial-events-end: "true"``.

Label and field selectors apply to transitions as in kube-apiserver: an object that starts
matching arrives as ``ADDED``, one that stops matching as ``DELETED``. Objects of a CRD with a
conversion webhook are converted to the version watched, one call per batch of events (before
selectors see them); a failed conversion ends the watch with an ``ERROR`` event carrying the
500 kube-apiserver answers. With
``allowWatchBookmarks`` a ``BOOKMARK`` carrying the current revision is sent whenever the
stream has been idle for ``bookmark_interval`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from arges.apiserver.entries import Change, Entry, sort_entries
from arges.apiserver.errors import Gone, StatusError
from arges.apiserver.resources import ResourceType, Version
from arges.apiserver.rest import Rest
from arges.apiserver.rest.options import ListOptions, parse_rv, too_large
from arges.apiserver.store import Expired

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event: ADDED, MODIFIED or DELETED with ``entry``, BOOKMARK at ``rv``, or ERROR."""

    type: str
    entry: Entry | None = None
    rv: int = 0
    status: dict[str, Any] | None = None
    initial_end: bool = False


@dataclass
class WatchOptions:
    """The watch-specific query parameters."""

    bookmarks: bool = False
    send_initial_events: bool = False
    timeout: float = 1800.0
    bookmark_interval: float = 60.0


async def watch(
    rest: Rest,
    rt: ResourceType,
    version: Version,
    namespace: str | None,
    opts: ListOptions,
    wopts: WatchOptions,
) -> AsyncGenerator[list[WatchEvent], None]:
    """Yield batches of events until the timeout, the server's shutdown, or an overflow.

    Raises:
        BadRequest: on a malformed resourceVersion (before anything is yielded).
    """
    store = rest.store
    match = rest.matcher(rt, version, opts)
    selective = bool(opts.labels.requirements or opts.fields.requirements)
    after: int | None = None
    if not wopts.send_initial_events and opts.resource_version not in ("", "0"):
        after = parse_rv(opts.resource_version)
    sub = store.subscribe(rt.resource)
    try:
        start = store.rv
        try:
            if after is None:
                current = await rest.entries_at(
                    rt, version, store.items(rt.resource, namespace), batch=True
                )
                first = [WatchEvent("ADDED", e) for e in sort_entries(filter(match, current))]
                if wopts.send_initial_events:
                    first.append(WatchEvent("BOOKMARK", rv=start, initial_end=True))
            elif after > start:
                yield [_error(too_large(after, start))]
                return
            else:
                try:
                    history = await store.history(rt.resource, after, start)
                except Expired as exc:
                    yield [
                        _error(Gone(f"too old resource version: {exc.requested} ({exc.oldest})"))
                    ]
                    return
                history = await _at_version(rest, rt, version, history, selective)
                first = _transitions(history, namespace, match)
        except StatusError as err:
            yield [_error(err)]
            return
        if first:
            yield first
        deadline = time.monotonic() + wopts.timeout
        last_sent = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = deadline - now
            if wopts.bookmarks:
                wait = min(wait, max(0.0, last_sent + wopts.bookmark_interval - now))
            changes = await sub.get(max_wait=wait)
            if sub.overflowed or sub.closed:
                return
            fresh = [c for c in changes if c.rv > start]
            try:
                fresh = await _at_version(rest, rt, version, fresh, selective)
            except StatusError as err:
                yield [_error(err)]
                return
            events = _transitions(fresh, namespace, match)
            if events:
                yield events
                last_sent = time.monotonic()
            elif wopts.bookmarks and time.monotonic() - last_sent >= wopts.bookmark_interval:
                yield [WatchEvent("BOOKMARK", rv=store.rv)]
                last_sent = time.monotonic()
    finally:
        store.unsubscribe(sub)


async def _at_version(
    rest: Rest, rt: ResourceType, version: Version, changes: list[Change], with_prev: bool
) -> list[Change]:
    """``changes`` with their entries (and, for selectors, previous entries) at ``version``.

    Raises:
        ConversionFailed: the CRD's conversion webhook failed.
    """
    if rt.conversion is None or not changes:
        return changes
    entries = [c.entry for c in changes]
    prevs = [c.prev for c in changes if c.prev is not None] if with_prev else []
    converted = await rest.entries_at(rt, version, entries + prevs, batch=True)
    by_id = {id(e): c for e, c in zip(entries + prevs, converted, strict=True)}
    return [
        Change(c.type, by_id[id(c.entry)], by_id.get(id(c.prev), c.prev) if c.prev else None)
        for c in changes
    ]


def _error(err: StatusError) -> WatchEvent:
    return WatchEvent("ERROR", status=err.status())


def _transitions(
    changes: list[Change], namespace: str | None, match: Callable[[Entry], bool]
) -> list[WatchEvent]:
    out = []
    for change in changes:
        entry = change.entry
        if namespace is not None and entry.namespace != namespace:
            continue
        if change.type == "ADDED":
            if match(entry):
                out.append(WatchEvent("ADDED", entry))
        elif change.type == "DELETED":
            if match(entry):
                out.append(WatchEvent("DELETED", entry))
        else:
            now_matches = match(entry)
            was_matching = change.prev is not None and match(change.prev)
            if now_matches and was_matching:
                out.append(WatchEvent("MODIFIED", entry))
            elif now_matches:
                out.append(WatchEvent("ADDED", entry))
            elif was_matching:
                out.append(WatchEvent("DELETED", entry))
    return out
