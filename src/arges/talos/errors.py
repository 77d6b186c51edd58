"""Errors of Talos config generation and of Talos API calls, one tree.

TalosError
├── UnsupportedVersion  a talosVersion this generator has no contract for
├── InvalidInput        an endpoint, name or option talosctl would refuse
├── InvalidSecrets      a secrets bundle or talosconfig that is incomplete or does not load
├── PatchError          a patch that does not parse or does not apply (names which)
└── TalosApiError       a call to a node's apid that did not succeed (names node and RPC)
    ├── Unreachable     no connection: refused, timed out, or TLS failed (either side)
    ├── NotReady        FAILED_PRECONDITION or UNAVAILABLE: the node may accept it later
    └── RequestFailed   any other gRPC status, or an answer that makes no sense
"""

from __future__ import annotations

from arges.errors import ArgesError


class TalosError(ArgesError):
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


class TalosApiError(TalosError):
    """A Talos API call that did not succeed.

    ``node`` is ``address:port``, ``rpc`` the MachineService method (e.g. ``Bootstrap``),
    ``code`` the gRPC status name (e.g. ``FAILED_PRECONDITION``; None when no status came
    back) and ``message`` what the node (or the connection) said.
    """

    def __init__(self, node: str, rpc: str, message: str, code: str | None = None) -> None:
        super().__init__(f"{rpc} on {node}: {code + ': ' if code else ''}{message}")
        self.node = node
        self.rpc = rpc
        self.code = code
        self.message = message


class Unreachable(TalosApiError):
    """The node's apid could not be reached: connection refused or reset, no answer within
    the timeout, or a TLS failure (an untrusted server, or apid refusing our certificate)."""


class NotReady(TalosApiError):
    """apid answered FAILED_PRECONDITION or UNAVAILABLE (e.g. "bootstrap is not available
    yet", "time is not in sync yet"): retry later."""


class RequestFailed(TalosApiError):
    """apid refused or failed the call for good (any other status, e.g. PERMISSION_DENIED,
    or FAILED_PRECONDITION "bootstrap can only be performed on a control plane node")."""
