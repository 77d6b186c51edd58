"""Small helpers on plain Kubernetes objects: timestamps, names, versions, identity."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from arges.apiserver.resources import ResourceType

# kube-apiserver's generateName alphabet (no vowels, no look-alikes): k8s.io/apimachinery
# pkg/util/rand.String.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATED_SUFFIX = 5


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes writes ``metav1.Time``: ``2026-11-24T15:04:13Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_name(prefix: str) -> str:
    """``prefix`` plus five random characters, as kube-apiserver completes ``generateName``."""
    base = prefix[: 63 - GENERATED_SUFFIX]
    return base + "".join(secrets.choice(_ALPHABET) for _ in range(GENERATED_SUFFIX))


def at_version(obj: dict[str, Any], rt: ResourceType, version: str) -> dict[str, Any]:
    """``obj`` labelled as ``version`` (the conversion of CRDs with strategy None)."""
    obj["apiVersion"] = rt.api_version(version)
    obj["kind"] = rt.kind
    return obj


def metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj["metadata"]``, created empty when missing or not an object."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta
