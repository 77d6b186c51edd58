"""Server: one physical machine, named by its SMBIOS UUID (``metal.arges.dev/v1alpha1``).

Field names follow Sidero Metal's Server where they are sound (``reference/sidero.md`` §1.2);
unlike Sidero, the observed inventory lives in ``status.hardware`` (Kubernetes conventions:
spec is desired state, status is observed), sizes are integers in bytes and speeds in MHz or
MT/s, and the inventory is refreshed on every registration.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from arges.api.base import (
    BootFromDiskMethod,
    Condition,
    JSONPatchOperation,
    LocalObjectReference,
    Model,
    Object,
    SecretReference,
    Time,
)

PowerState = Literal["on", "off", "unknown"]
IPMI_PORT = 623
PROTECTION_FINALIZER = "metal.arges.dev/server-protection"
"""Every Server carries this finalizer (the Server controller adds it, discovery creates
Servers with it); the Server controller removes it only when the Server is being deleted and
no binding holds it, so a bound server cannot be deleted."""
BootMethod = Literal["network", "virtualMedia"]
DiskType = Literal["SSD", "HDD", "NVMe", "virtio", "SD", "Unknown"]


class BMC(Model):
    """How to reach a server's baseboard management controller."""

    address: str | None = Field(
        default=None, description="IPMI: IP address or host name of the BMC."
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="IPMI: BMC port (unset: 623)."
    )
    protocol: Literal["ipmi", "redfish", "fake"] = Field(
        default="ipmi",
        description="Management protocol: ipmi (IPMI 2.0 over LAN), redfish (DMTF Redfish, "
        "session login), or fake (an in-memory BMC for tests).",
    )
    endpoint: str | None = Field(
        default=None,
        description="Redfish: the service's base URL, https://host[:port] (the service root "
        "is /redfish/v1/ under it).",
    )
    system_id: str | None = Field(
        default=None,
        description="Redfish: the ComputerSystem to manage, by Id or path "
        "(/redfish/v1/Systems/1); unset, the service's only system.",
    )
    insecure: bool | None = Field(
        default=None,
        description="Redfish: do not verify the BMC's TLS certificate (condition "
        "BMCCertificateVerified shows it). Otherwise it is verified against the credentials "
        "Secret's `ca.crt`, or the host's trusted CAs without one.",
    )
    credentials_secret_ref: SecretReference | None = Field(
        default=None,
        description="Secret holding the BMC credentials in keys `username` and `password` "
        "(and, for Redfish, optionally `ca.crt`: the CA that signed the BMC's certificate).",
    )


class AgentNetwork(Model):
    """Static addressing for the discovery agent, given to it as kernel arguments (``ip=``
    in the kernel's nfsroot format) where no site DHCP serves the server."""

    address: str = Field(description="The server's address with its prefix, e.g. 10.0.0.5/24.")
    gateway: str | None = Field(default=None, description="Default gateway.")
    nameservers: list[str] | None = Field(default=None, description="DNS servers (up to 2).")
    mac: str | None = Field(
        default=None,
        description="The NIC to configure, by MAC; unset, every NIC with a link is tried.",
    )


class ServerSpec(Model):
    """Desired state of a Server, set by people (or by the lab's asset list)."""

    accepted: bool = Field(
        default=False,
        description="Whether Arges may manage the server. Nothing destructive (wipe, power "
        "control, provisioning) happens to a server that is not accepted.",
    )
    cordoned: bool = Field(
        default=False, description="Cordoned servers are never allocated (but still managed)."
    )
    bmc: BMC | None = Field(default=None, description="The server's BMC, if it has one.")
    boot_method: BootMethod | None = Field(
        default=None,
        description="How the agent reaches the server: network (PXE/iPXE from Arges) or "
        "virtualMedia (the agent ISO inserted through a Redfish BMC, booted once from CD). "
        "Unset: the ServerClass's, else network.",
    )
    agent_network: AgentNetwork | None = Field(
        default=None,
        description="Static addressing for the agent booted from virtual media; unset, it "
        "asks the site's DHCP.",
    )
    environment_ref: LocalObjectReference | None = Field(
        default=None,
        description="Environment to boot when allocated; overrides the ServerClass's.",
    )
    pxe_boot_always: bool = Field(
        default=False, description="Always serve the target Environment, never boot from disk."
    )
    boot_from_disk_method: BootFromDiskMethod | None = Field(
        default=None, description="How to tell the firmware to boot from disk (per server)."
    )
    config_patches: list[JSONPatchOperation] | None = Field(
        default=None,
        description="RFC 6902 patches applied to this server's machine config, after the "
        "ServerClass's.",
    )
    strategic_patches: list[str] | None = Field(
        default=None,
        description="Talos strategic merge patches (YAML documents), after the ServerClass's.",
    )


class SystemInformation(Model):
    """SMBIOS type 1 (System Information)."""

    uuid: str = ""
    manufacturer: str = ""
    product_name: str = ""
    version: str = ""
    serial_number: str = ""
    sku_number: str = ""
    family: str = ""


class Processor(Model):
    """SMBIOS type 4 (Processor Information), one populated socket."""

    manufacturer: str = ""
    product_name: str = ""
    speed: int = Field(default=0, description="Current speed in MHz.")
    core_count: int = 0
    thread_count: int = 0


class ComputeInformation(Model):
    """Processors and their totals."""

    processor_count: int = 0
    total_core_count: int = 0
    total_thread_count: int = 0
    processors: list[Processor] = Field(default_factory=list)


class MemoryModule(Model):
    """SMBIOS type 17 (Memory Device), one populated slot."""

    manufacturer: str = ""
    product_name: str = ""
    serial_number: str = ""
    type: str = ""
    size: int = Field(default=0, description="Size in bytes.")
    speed: int = Field(default=0, description="Speed in MT/s.")


class MemoryInformation(Model):
    """Memory modules and their total."""

    total_size: int = Field(default=0, description="Total size in bytes.")
    module_count: int = 0
    modules: list[MemoryModule] = Field(default_factory=list)


class StorageDevice(Model):
    """One block device (a whole disk)."""

    name: str = Field(default="", description="Kernel name, e.g. sda, nvme0n1, vda.")
    type: DiskType = "Unknown"
    size: int = Field(default=0, description="Size in bytes.")
    product_name: str = Field(default="", description="Model reported by the device.")
    serial_number: str = ""
    wwid: str = Field(default="", description="World Wide Identifier (WWN), if any.")


class StorageInformation(Model):
    """Block devices and their total."""

    total_size: int = Field(default=0, description="Total size in bytes.")
    device_count: int = 0
    devices: list[StorageDevice] = Field(default_factory=list)


class NetworkInterface(Model):
    """One network interface with a MAC address."""

    index: int = 0
    name: str = ""
    mac: str = Field(default="", description="MAC address, lowercase, colon-separated.")
    mtu: int = 0
    link: Literal["up", "down", "unknown"] = "unknown"
    addresses: list[str] = Field(default_factory=list, description="Addresses in CIDR form.")


class NetworkInformation(Model):
    """Network interfaces."""

    interface_count: int = 0
    interfaces: list[NetworkInterface] = Field(default_factory=list)


class HardwareInformation(Model):
    """The inventory the discovery agent reports (refreshed at every registration)."""

    system: SystemInformation = Field(default_factory=SystemInformation)
    compute: ComputeInformation = Field(default_factory=ComputeInformation)
    memory: MemoryInformation = Field(default_factory=MemoryInformation)
    storage: StorageInformation = Field(default_factory=StorageInformation)
    network: NetworkInformation = Field(default_factory=NetworkInformation)


class NodeAddress(Model):
    """An address of the server (``core/v1 NodeAddress``)."""

    type: Literal["InternalIP", "ExternalIP", "Hostname"] = "InternalIP"
    address: str


CredentialPurpose = Literal["agent", "config"]


class DhcpSighting(Model):
    """What Arges' DHCP or ProxyDHCP saw of a network boot."""

    mac: str = Field(description="The client's hardware address (chaddr).")
    uuid: str = Field(
        default="", description="The SMBIOS UUID the client sent in option 97, if any."
    )
    address: str = Field(
        default="", description="The address it leased (full DHCP) or asked for (option 50)."
    )


class BootCredential(Model):
    """The credential of the server's current network boot, minted by ``/ipxe``.

    The credential itself goes only into that boot's kernel arguments; here is its SHA-256,
    which cannot be turned back into it. ``purpose`` is what it is good for: ``agent`` (the
    discovery agent's registration and reports) or ``config`` (``/configdata`` and the
    installed report of the target Environment).
    """

    purpose: CredentialPurpose = Field(description="agent or config.")
    sha256: str | None = Field(
        default=None, description="SHA-256 (hex) of the credential; absent once spent."
    )
    issued: Time = Field(description="When /ipxe minted it.")
    expires: Time = Field(description="When it stops working unless used (each use moves this on).")
    client: str = Field(description="The address that asked /ipxe.")
    mac: str = Field(default="", description="The NIC iPXE booted from (its /ipxe query).")
    dhcp: DhcpSighting | None = Field(
        default=None, description="What DHCP saw of the boot from that NIC, when it saw it."
    )
    addresses: list[str] = Field(
        default_factory=list,
        description="Addresses it is accepted from: the one that asked /ipxe, and addresses "
        "Arges' DHCP saw the server's NICs lease since.",
    )
    spent: str | None = Field(default=None, description="Why it no longer works, once spent.")


class ServerStatus(Model):
    """Observed state of a Server."""

    hardware: HardwareInformation | None = Field(
        default=None, description="Inventory reported by the discovery agent."
    )
    hostname: str | None = Field(default=None, description="Host name the agent observed.")
    addresses: list[NodeAddress] | None = None
    power: PowerState | None = Field(default=None, description="Power state read from the BMC.")
    in_use: bool | None = Field(default=None, description="Bound by a ServerBinding.")
    is_clean: bool | None = Field(
        default=None, description="Disks wiped since the server was last used or accepted."
    )
    last_seen: Time | None = Field(
        default=None, description="When the agent last registered or reported."
    )
    boot_credential: BootCredential | None = Field(
        default=None, description="The credential of the current network boot (its hash)."
    )
    conditions: list[Condition] | None = None


class Server(Object):
    """Server is one physical machine, named by its lowercase SMBIOS UUID. The discovery agent
    creates it and reports its hardware; people accept it; Arges wipes, powers and provisions
    it."""

    api_version: str = "metal.arges.dev/v1alpha1"
    kind: str = "Server"
    spec: ServerSpec = Field(default_factory=ServerSpec)
    status: ServerStatus = Field(default_factory=ServerStatus)
