"""Errors of Talos config generation, one tree.

TalosError
├── UnsupportedVersion  a talosVersion this generator has no contract for
├── InvalidInput        an endpoint, name or option talosctl would refuse
├── InvalidSecrets      a secrets bundle that is incomplete or does not parse
└── PatchError          a patch that does not parse or does not apply (names which)
"""

from __future__ import annotations


class TalosError(Exception):
    """Base of every error this package raises."""


class UnsupportedVersion(TalosError):
    """The requested Talos version has no known config contract here."""


class InvalidInput(TalosError):
    """An argument talosctl would refuse (e.g. an endpoint without https://)."""


class InvalidSecrets(TalosError):
    """A secrets bundle that is incomplete or malformed."""


class PatchError(TalosError):
    """A patch that cannot be parsed or applied; ``source`` and ``index`` say which."""

    def __init__(self, source: str, index: int, why: str) -> None:
        super().__init__(f"{source} patch #{index + 1}: {why}")
        self.source = source
        self.index = index
        self.why = why
