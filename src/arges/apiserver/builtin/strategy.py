"""The strategy every built-in kind starts from.

Built-in kinds have no ``metadata.generation``, take strategic merge patches on their
metadata only, and accept an update without a resourceVersion (kube-apiserver's
``AllowUnconditionalUpdate`` for these kinds); kinds with more rules subclass it.
"""

from __future__ import annotations

from typing import Any

from arges.apiserver.patch import OBJECT_META_PATCH
from arges.apiserver.resources import ResourceType, Strategy


class BuiltinStrategy(Strategy):
    """A built-in kind's strategy: no generation, nothing prepared (see the module docstring)."""

    generation = False
    strategic = OBJECT_META_PATCH
    unconditional_update = True

    def prepare_for_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        return None

    def prepare_for_update(
        self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]
    ) -> None:
        return None
