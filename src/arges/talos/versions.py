"""Talos config contracts this generator knows, and what each implies.

``talosctl gen config --talos-version vX.Y`` picks a "version contract" that decides the
generated content (``pkg/machinery/config/contract.go``). Contracts v1.8 to v1.11 generate
byte-identical configs; v1.12 and later add documents and drop fields, so they are refused
until implemented rather than approximated (``reference/talos-capi.md`` §1.1, §1.7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from arges.talos.errors import UnsupportedVersion


@dataclass(frozen=True)
class Contract:
    """A config contract: its version, and the defaults talosctl of that line uses."""

    version: str
    talos_release: str
    kubernetes: str
    """``constants.DefaultKubernetesVersion`` of that Talos line."""

    @property
    def installer(self) -> str:
        return f"ghcr.io/siderolabs/installer:{self.talos_release}"


CONTRACTS = {
    "v1.11": Contract("v1.11", "v1.11.6", "1.34.1"),
}

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")


def contract(talos_version: str) -> Contract:
    """The contract for ``talos_version`` (``v1.11``, ``1.11`` or ``v1.11.6``).

    Raises:
        UnsupportedVersion: for any other line, naming the ones supported.
    """
    match = _VERSION.match(talos_version.strip())
    key = f"v{match.group(1)}.{match.group(2)}" if match else None
    if key is None or key not in CONTRACTS:
        supported = ", ".join(sorted(CONTRACTS))
        raise UnsupportedVersion(
            f"Talos version {talos_version!r} is not supported by this generator (supported: "
            f"{supported}); refusing rather than emitting a config Talos might reject"
        )
    return CONTRACTS[key]


INSTALLER_REPOSITORY = "ghcr.io/siderolabs/installer"
_RELEASE = re.compile(r"^v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


def installer_image(talos_version: str, override: str | None = None) -> str:
    """The installer image members of a cluster at ``talos_version`` install and upgrade to:
    ``override`` when given, else Talos' own installer of that release when
    ``talos_version`` names one (``v1.11.5``), else the release of its contract's line.

    Raises:
        UnsupportedVersion: ``talos_version`` has no known contract.
    """
    line = contract(talos_version)
    if override:
        return override
    version = talos_version.strip()
    version = version if version.startswith("v") else f"v{version}"
    if _RELEASE.match(version):
        return f"{INSTALLER_REPOSITORY}:{version}"
    return line.installer
