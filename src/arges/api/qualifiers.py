"""Partial inventories: the ``qualifiers.hardware`` entries of a ServerClass.

Each has the shape of a Server's ``status.hardware`` with every field optional: a field left
out (or zero, or empty, as in Sidero's ``PartialEqual``) is not compared. Units are the
inventory's: sizes in bytes, speeds in MHz or MT/s. Two places where Sidero's inventory used
other units are handled so that a qualifier copied from Sidero never silently matches nothing
(Sidero's ``api/v1alpha2/server_types.go`` field docs):

- ``memory.modules[].size`` was in MB there; here it is bytes. A value below 1 MiB cannot be a
  memory module in bytes, so it is refused, saying the unit (by the CRD and by
  :func:`arges.metal.classes.compile_class`);
- ``memory.totalSize`` and ``storage.totalSize`` were strings ``"<N> GB"`` (whole GiB, rounded
  down). Such a string keeps Sidero's meaning here; an integer is bytes, compared exactly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from arges.api.base import Model
from arges.api.server import DiskType

MIB = 1 << 20
GIB = 1 << 30

MODULE_SIZE_RULE: dict[str, Any] = {
    "rule": f"self == 0 || self >= {MIB}",
    "message": "memory module sizes are in bytes here; Sidero wrote them in MB (multiply by "
    f"{MIB}: 16384 MB is {16384 * MIB} bytes)",
}
"""The CRD's check of ``memory.modules[].size`` (see the module docstring)."""
TOTAL_SIZE_SCHEMA: dict[str, Any] = {"x-kubernetes-int-or-string": True}
MAX_MODULES = 64
MAX_QUALIFIERS = 16
"""Bounds on the lists the module size check runs over: kube-apiserver refuses a CRD whose
CEL rules could cost too much on unbounded lists, and so does Arges'."""


def module_size_problem(size: int) -> str | None:
    """Why ``size`` (a qualifier's memory module size) is refused, or None: a positive value
    below 1 MiB is a size in Sidero's MB, never a module's size in bytes."""
    if 0 < size < MIB:
        return (
            f"{size} is not a memory module size in bytes; Sidero wrote module sizes in MB: "
            f"{size} MB is {size * MIB} bytes"
        )
    return None


class SystemQualifier(Model):
    """SMBIOS type 1 fields to compare."""

    uuid: str | None = None
    manufacturer: str | None = None
    product_name: str | None = None
    version: str | None = None
    serial_number: str | None = None
    sku_number: str | None = None
    family: str | None = None


class ProcessorQualifier(Model):
    """One processor socket's fields to compare (by position in processors)."""

    manufacturer: str | None = None
    product_name: str | None = None
    speed: int | None = Field(default=None, ge=0, description="Current speed in MHz.")
    core_count: int | None = Field(default=None, ge=0)
    thread_count: int | None = Field(default=None, ge=0)


class ComputeQualifier(Model):
    """Processor counts and sockets to compare."""

    processor_count: int | None = Field(default=None, ge=0)
    total_core_count: int | None = Field(default=None, ge=0)
    total_thread_count: int | None = Field(default=None, ge=0)
    processors: list[ProcessorQualifier] | None = None


class MemoryModuleQualifier(Model):
    """One memory module's fields to compare (by position in modules)."""

    manufacturer: str | None = None
    product_name: str | None = None
    serial_number: str | None = None
    type: str | None = None
    size: int | None = Field(
        default=None,
        ge=0,
        description="Size in bytes (Sidero's inventory said MB: multiply by 1048576).",
        json_schema_extra={"x-kubernetes-validations": [MODULE_SIZE_RULE]},
    )
    speed: int | None = Field(default=None, ge=0, description="Speed in MT/s.")


class MemoryQualifier(Model):
    """Memory totals and modules to compare."""

    total_size: int | str | None = Field(
        default=None,
        description='Total size in bytes, or Sidero\'s "<N> GB" (whole GiB, rounded down).',
        json_schema_extra=TOTAL_SIZE_SCHEMA,
    )
    module_count: int | None = Field(default=None, ge=0)
    modules: list[MemoryModuleQualifier] | None = Field(
        default=None,
        max_length=MAX_MODULES,
        description="Modules compared by position (at most 64, which bounds the CRD's check).",
    )


class StorageDeviceQualifier(Model):
    """One disk's fields to compare (by position in devices)."""

    name: str | None = None
    type: DiskType | None = None
    size: int | None = Field(default=None, ge=0, description="Size in bytes.")
    product_name: str | None = None
    serial_number: str | None = None
    wwid: str | None = None


class StorageQualifier(Model):
    """Storage totals and disks to compare."""

    total_size: int | str | None = Field(
        default=None,
        description='Total size in bytes, or Sidero\'s "<N> GB" (whole GiB, rounded down).',
        json_schema_extra=TOTAL_SIZE_SCHEMA,
    )
    device_count: int | None = Field(default=None, ge=0)
    devices: list[StorageDeviceQualifier] | None = None


class NetworkInterfaceQualifier(Model):
    """One network interface's fields to compare (by position in interfaces)."""

    index: int | None = Field(default=None, ge=0)
    name: str | None = None
    mac: str | None = None
    mtu: int | None = Field(default=None, ge=0)
    link: Literal["up", "down", "unknown"] | None = None
    addresses: list[str] | None = None


class NetworkQualifier(Model):
    """Network interfaces to compare."""

    interface_count: int | None = Field(default=None, ge=0)
    interfaces: list[NetworkInterfaceQualifier] | None = None


class HardwareQualifier(Model):
    """A partial inventory (see the module docstring)."""

    system: SystemQualifier | None = None
    compute: ComputeQualifier | None = None
    memory: MemoryQualifier | None = None
    storage: StorageQualifier | None = None
    network: NetworkQualifier | None = None
