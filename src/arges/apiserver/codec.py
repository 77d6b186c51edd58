"""JSON encoding for stored objects and responses: one place, so the wire format is uniform.

Objects are stored and sent as compact UTF-8 JSON (orjson: several times faster than the
standard library, which matters for full lists and watch fan-out). YAML request bodies, which
kubectl never sends but people with curl do, are accepted too.
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml

from arges.apiserver.errors import BadRequest


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes for ``obj``."""
    return orjson.dumps(obj)


def loads(data: bytes | str) -> Any:
    """Parse JSON bytes produced by :func:`dumps` (stored data: trusted, errors propagate)."""
    return orjson.loads(data)


def decode_body(data: bytes, content_type: str) -> Any:
    """Decode a request body sent as JSON or YAML.

    Raises:
        BadRequest: when the body is empty or does not parse, naming the parser's complaint.
    """
    if not data.strip():
        raise BadRequest("the request body is empty")
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise BadRequest(f"the request body is not valid YAML: {exc}") from exc
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
