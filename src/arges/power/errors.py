"""Errors from BMCs, one tree; messages say what to check and never carry a password.

PowerError
├── BmcUnreachable        no answer from the BMC's address and port
├── AuthenticationFailed  the BMC refused the credentials
├── TlsUntrusted          the BMC's TLS certificate did not verify
├── Unsupported           the BMC or the driver cannot do what was asked
├── PowerTimeout          the action was accepted, but the state never got there
└── BmcError              any other failure reported by the BMC or the tool
"""

from __future__ import annotations

from arges.errors import ArgesError


class PowerError(ArgesError):
    """Base of every power-management error."""


class BmcUnreachable(PowerError):
    """The BMC did not answer."""


class AuthenticationFailed(PowerError):
    """The BMC refused the username or password."""


class TlsUntrusted(PowerError):
    """The BMC's TLS certificate is not signed by the CA Arges was given (or expired, or
    names another host)."""


class Unsupported(PowerError):
    """The protocol, BMC or driver does not support the request."""


class PowerTimeout(PowerError):
    """The BMC accepted an action but the power state did not follow in time."""


class BmcError(PowerError):
    """Any other failure, with the BMC's or the tool's own words."""
