"""JSON encoding for stored objects and responses: one place, so the wire format is uniform.

Objects are stored and sent as compact UTF-8 JSON (orjson: several times faster than the
standard library, which matters for full lists and watch fan-out). YAML request bodies, which
kubectl never sends but people with curl do, are accepted too.

Request bodies are bounded in what they decode to, not only in bytes: nesting deeper than
:data:`MAX_DEPTH` is refused (kube-apiserver's decoders stop at 10,000 levels; here the
encoder's own limit, 254, must never be met by a stored object wrapped in a review or a
watch event), and a YAML document whose aliases would expand it is refused before it is
built, with go-yaml's rule and message (``document contains excessive aliasing``: the
CVE-2019-11253 fix kube-apiserver relies on) and a bound on its expanded size.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import orjson
import yaml

from arges.apiserver import yieldingjson
from arges.apiserver.errors import BadRequest, RequestTooLarge

MAX_DEPTH = 100
"""How deeply a request body may nest objects and arrays."""

YIELDING_BYTES = 256 * 1024
"""JSON bodies larger than this are decoded by :mod:`arges.apiserver.yieldingjson`, which
lets the event loop's thread run while it decodes (orjson holds the GIL throughout: about
1.3 ms at this size, 15 ms at 3 MiB)."""

_CONTAINERS = (dict, list)
"""What nests (a tuple: ``isinstance`` checks it faster than ``dict | list``)."""

_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML has it: faster, and it nests without Python recursion."""

# go-yaml's alias heuristic (yaml.v2 decode.go, allowedAliasRatio): up to 99% of the decoded
# nodes may come from aliases in documents of up to 400,000 nodes, down to 10% at 4,000,000.
_ALIAS_RATIO_LOW = 400_000
_ALIAS_RATIO_HIGH = 4_000_000


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes for ``obj`` (to send or compare; see :func:`trim` for keeping)."""
    return orjson.dumps(obj)


def trim(raw: bytes) -> bytes:
    """``raw`` in an allocation of its own size: what an index or a cache keeps of
    :func:`dumps`.

    orjson (3.12 on) returns its working buffer, at least 4 KiB and several times the text,
    and does not shrink it (ijl/orjson#483): a 3.9 KB object held as it comes costs 24 KiB
    (tracemalloc), its copy 4 KiB, and the copy takes well under a microsecond.
    """
    return bytes(memoryview(raw))


PIECE_ITEMS = 16
"""Below the top :data:`PIECE_LEVELS` levels, a container with this many items or more is
encoded an item at a time by :func:`dumps_in_pieces`; a smaller one in one call."""
PIECE_LEVELS = 3


def dumps_in_pieces(obj: Any) -> bytes:
    """:func:`dumps`' bytes for ``obj``, made by one orjson call per piece: the containers of
    the top :data:`PIECE_LEVELS` levels, and any with :data:`PIECE_ITEMS` items or more, are
    taken apart.

    For a large object encoded on a worker thread: each orjson call holds the GIL from start
    to end (about 2 ms for 3 MiB in one call, up to 8 ms in a busy process), and the event
    loop's thread waits for it; between pieces the interpreter can hand the GIL over. The
    output is the same bytes as :func:`dumps`' (a property test holds it to that).

    Raises:
        orjson.JSONEncodeError: as :func:`dumps` (a value JSON cannot hold).
    """
    out: list[bytes] = []
    _pieces(obj, out, 0)
    return b"".join(out)


def _pieces(value: Any, out: list[bytes], level: int) -> None:
    kind = type(value)
    split = level < PIECE_LEVELS or len(value) >= PIECE_ITEMS if kind in _CONTAINERS else False
    # A key that is no string goes to orjson with its object, which refuses it as dumps() does.
    if kind is dict and value and split and all(type(key) is str for key in value):
        out.append(b"{")
        for i, (key, item) in enumerate(value.items()):
            out.append((b"," if i else b"") + orjson.dumps(key) + b":")
            _pieces(item, out, level + 1)
        out.append(b"}")
    elif kind is list and value and split:
        out.append(b"[")
        for i, item in enumerate(value):
            if i:
                out.append(b",")
            _pieces(item, out, level + 1)
        out.append(b"]")
    else:
        out.append(orjson.dumps(value))


def loads(data: bytes | str) -> Any:
    """Parse JSON bytes produced by :func:`dumps` (stored data: trusted, errors propagate)."""
    return orjson.loads(data)


def clone(obj: Any) -> Any:
    """A deep copy of the JSON value ``obj`` (a JSON round trip: an order of magnitude faster
    than ``copy.deepcopy`` for API objects, which hold only JSON types)."""
    return orjson.loads(orjson.dumps(obj))


def decode_body(data: bytes, content_type: str, *, kind: str = "", expanded_limit: int = 0) -> Any:
    """Decode a request body sent as JSON or YAML.

    ``kind`` names the type the body must be: limits are then worded as kube-apiserver words
    a body it cannot even read the kind of (``the object provided is unrecognized (must be of
    type <kind>): ...``). ``expanded_limit`` (bytes, 0: none) bounds the JSON size a YAML
    document may expand to through its aliases.

    Raises:
        BadRequest: when the body is empty, does not parse, nests deeper than
            :data:`MAX_DEPTH` or aliases excessively, naming the parser's complaint.
        RequestTooLarge: when a YAML document's aliases expand it past ``expanded_limit``.
    """
    if not data.strip():
        raise BadRequest("the request body is empty")
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        return _decode_yaml(data, kind, expanded_limit)
    try:
        obj = yieldingjson.loads(data) if len(data) > YIELDING_BYTES else orjson.loads(data)
    except (orjson.JSONDecodeError, yieldingjson.InvalidJSON) as exc:
        if "depth limit" in str(exc):
            raise _unrecognized(kind, data, "json: exceeded max depth") from exc
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise _unrecognized(kind, data, "json: exceeded max depth") from exc
    # A body cannot nest deeper than it has opening brackets (a count at C speed): most
    # bodies, a status patch, have too few to need measuring.
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH and depth(obj) > MAX_DEPTH:
        raise _unrecognized(kind, data, f"json: exceeded max depth of {MAX_DEPTH}")
    return obj


def depth(obj: Any) -> int:
    """How many objects and arrays nest in ``obj`` at its deepest (a scalar: 0).

    Walks level by level, keeping only the containers of each: a 3 MiB body is measured in
    about 15 ms, half the time of visiting every value with its level.
    """
    deepest = 0
    level = [obj] if isinstance(obj, _CONTAINERS) else []
    while level:
        deepest += 1
        below: list[Any] = []
        for value in level:
            children = value.values() if isinstance(value, dict) else value
            below += [child for child in children if isinstance(child, _CONTAINERS)]
        level = below
    return deepest


def _unrecognized(kind: str, data: bytes, why: str) -> BadRequest:
    """kube-apiserver's ``transformDecodeError`` for a body whose kind it could not read."""
    if not kind:
        return BadRequest(f"the request body cannot be decoded: {why}")
    head = data[:30]
    summary = head.decode("utf-8", "replace") if head.startswith(b"{") else head.hex()
    if len(data) > 30:
        summary += " ..."
    return BadRequest(
        f"the object provided is unrecognized (must be of type {kind}): {why} ({summary})"
    )


def _decode_yaml(data: bytes, kind: str, expanded_limit: int) -> Any:
    loader = _LOADER(data)
    # The loader's table of what each node became: kept, so it is not freed all at once when
    # the document is built (see _release).
    constructed = loader.constructed_objects
    node = None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, kind, data, expanded_limit)
        return _jsonable(loader.construct_document(node))
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):
            # libyaml's own bound (1,000 levels), met before the node graph is measured.
            raise _unrecognized(kind, data, f"yaml: exceeded max depth of {MAX_DEPTH}") from exc
        raise BadRequest(f"the request body is not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise _unrecognized(kind, data, f"yaml: exceeded max depth of {MAX_DEPTH}") from exc
    finally:
        _release(constructed, node)
        loader.dispose()


def _release(constructed: dict[Any, Any], root: yaml.Node | None) -> None:
    """Free what decoding a YAML body built, a piece at a time: the loader's table of what
    each node became, and the node graph under ``root``.

    This runs on a decoding thread. Left to reference counting, a 3 MiB body's hundreds of
    thousands of nodes are freed in one deallocation cascade: one C call that holds the GIL,
    and the event loop with it, for 10-40 ms. Freed here, each piece is let go by its own
    bytecode, and the interpreter can hand the GIL over between any two of them.
    """
    while constructed:
        constructed.popitem()
    todo = [root] if root is not None else []
    while todo:
        node = todo.pop()
        # Each node's children leave its value for the list of what is still to free; a
        # node met again (an alias) has nothing left to give.
        value, node.value = node.value, None
        if type(value) is list:
            for item in value:
                if type(item) is tuple:
                    todo.extend(item)
                else:
                    todo.append(item)


def _allowed_alias_ratio(count: int) -> float:
    if count <= _ALIAS_RATIO_LOW:
        return 0.99
    if count >= _ALIAS_RATIO_HIGH:
        return 0.10
    span = _ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW
    return 0.99 - 0.89 * (count - _ALIAS_RATIO_LOW) / span


_SHARDS = 64
"""Parts a table by node is split in while :func:`_check_expansion` measures a document: one
table of a 3 MiB body's hundreds of thousands of nodes held the GIL for up to 13 ms at each of
its resizes and again when freed, on the decoding thread, and the event loop waited as long."""
_MASK = _SHARDS - 1


def _check_expansion(root: yaml.Node, kind: str, data: bytes, expanded_limit: int) -> None:
    """Measure the composed document as go-yaml would decode it, aliases expanded, without
    expanding it: nodes, JSON bytes and depth per distinct node in one depth-first pass (a
    node met again is an alias of it), then how often each node is decoded, top down.

    go-yaml counts every node it decodes (an alias node too) and those decoded inside an
    alias; the second count may not exceed a share of the first (:func:`_allowed_alias_ratio`).
    """
    # By id(node), split in _SHARDS tables (see _SHARDS); ids are 16-byte aligned.
    shards: list[dict[int, tuple[int, int, int]]] = [{} for _ in range(_SHARDS)]
    times: list[dict[int, int]] = [{} for _ in range(_SHARDS)]
    try:
        _measure(root, kind, data, expanded_limit, shards, times)
    finally:
        # One table at a time: all of them at once is one deallocation holding the GIL.
        while shards:
            shards.pop()
        while times:
            times.pop()


def _measure(
    root: yaml.Node,
    kind: str,
    data: bytes,
    expanded_limit: int,
    shards: list[dict[int, tuple[int, int, int]]],
    times: list[dict[int, int]],
) -> None:
    order: list[yaml.Node] = []
    alias_parents: list[int] = []
    todo: list[tuple[yaml.Node, bool, int]] = [(root, False, 0)]
    on_path: set[int] = set()
    while todo:
        node, done, parent = todo.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            measures = [shards[id(c) >> 4 & _MASK][id(c)] for c in children]
            count = 1 + sum(m[0] for m in measures)
            size = 2 + sum(m[1] + 1 for m in measures)
            deep = 1 + max((m[2] for m in measures), default=0)
            shards[key >> 4 & _MASK][key] = (count, size, deep)
            order.append(node)
            continue
        if key in on_path:
            raise BadRequest("the request body is not valid YAML: an anchor contains itself")
        if key in shards[key >> 4 & _MASK]:
            alias_parents.append(parent)
            continue
        if isinstance(node, yaml.ScalarNode):
            shards[key >> 4 & _MASK][key] = (1, len(node.value) + 2, 0)
            order.append(node)
            continue
        on_path.add(key)
        todo.append((node, True, parent))
        todo.extend((c, False, key) for c in reversed(_children(node)))
        if len(on_path) > MAX_DEPTH:
            raise _unrecognized(kind, data, f"yaml: exceeded max depth of {MAX_DEPTH}")
    count, size, deep = shards[id(root) >> 4 & _MASK][id(root)]
    if alias_parents:
        times[id(root) >> 4 & _MASK][id(root)] = 1
        for node in reversed(order):
            here = times[id(node) >> 4 & _MASK][id(node)]
            for child in _children(node):
                part = times[id(child) >> 4 & _MASK]
                part[id(child)] = part.get(id(child), 0) + here
        alias_nodes = sum(times[p >> 4 & _MASK][p] for p in alias_parents)
        decoded = count + alias_nodes
        distinct = sum(len(part) for part in shards)
        aliased = count - distinct + alias_nodes - len(alias_parents)
        if aliased > 100 and decoded > 1000 and aliased / decoded > _allowed_alias_ratio(decoded):
            raise _unrecognized(kind, data, "yaml: document contains excessive aliasing")
    if deep > MAX_DEPTH:
        raise _unrecognized(kind, data, f"yaml: exceeded max depth of {MAX_DEPTH}")
    if expanded_limit and size > expanded_limit:
        raise RequestTooLarge(
            f"the request body exceeds {expanded_limit} bytes once its YAML aliases are expanded"
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _jsonable(value: Any) -> Any:
    """What sigs.k8s.io/yaml's YAML-to-JSON conversion makes of the YAML-only values the
    safe loader builds: keys become strings, sets maps of nulls, timestamps strings, binary
    base64 (the depth is bounded by the checks before).

    Strings are copied, in document order. The loader's own lie scattered through memory
    among the nodes and events it discarded, and every later walk of the object on the event
    loop (encoding the answer, validation, managed fields) paid for it in cache misses:
    ``orjson.dumps`` of a 3 MiB YAML body took 9-21 ms against 2 ms for the copies (and for
    the same object decoded from JSON). The copies cost the decoding thread no measurable time
    (about 2 s for that body either way)."""
    if type(value) is str:
        return value.encode().decode()
    if isinstance(value, dict):
        return {_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, set):
        return {_key(k): None for k in value}
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    jsonable = _jsonable(key)
    return jsonable if isinstance(jsonable, str) else orjson.dumps(jsonable).decode()
