"""The root of Arges' own errors.

Every exception class Arges defines derives from :class:`ArgesError`, so a boundary (the
CLI's ``main``, an HTTP handler, the controller runtime) can tell "Arges refused or failed,
with a message meant for a person" from a bug in Arges or a library (anything else). Each
subclass keeps its own name and, where callers catch it that way, a standard base too
(``ValueError`` for bad input, for instance).

This module sits below every layer (see the import-linter contracts in ``pyproject.toml``)
and uses the standard library only, because the discovery agent, which runs from its
initramfs, imports it too.
"""

from __future__ import annotations


class ArgesError(Exception):
    """An error Arges raises on purpose; ``str()`` is a message for a person."""
