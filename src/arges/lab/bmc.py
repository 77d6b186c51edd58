"""The lab's BMCs: IPMI 2.0 over LAN on loopback, one per lab server, with real authentication.

Built on pyghmi's ``Bmc`` server, which answers ``ipmitool -I lanplus`` (RMCP+, cipher suite
3; it does not speak suite 17, so clients fall back, as the project's driver does). Chassis
control starts, stops and resets the server's QEMU process (:class:`~arges.lab.vm.
VirtualMachine`); "set boot device" applies at the next start, once or persistently as
IPMI's boot-flags byte says. A wrong username or password fails the session.

pyghmi serves every BMC of a process from one loop (``Bmc.listen``), run here on a daemon
thread. ``python -m arges.lab.bmc`` runs one BMC for a test, reading its settings (password
included) as JSON from standard input, never from its arguments.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

from pyghmi.ipmi import bmc as pyghmi_bmc

from arges.lab.vm import VirtualMachine

log = logging.getLogger(__name__)

DEVICES = {"network": "network", "pxe": "network", "hd": "disk", "disk": "disk"}
"""pyghmi's boot device names to the lab's."""


class LabBmc(pyghmi_bmc.Bmc):  # type: ignore[misc]
    """One lab server's BMC (see the module docstring)."""

    def __init__(
        self,
        vm: VirtualMachine,
        *,
        username: str,
        password: str,
        port: int,
        address: str = "127.0.0.1",
    ) -> None:
        super().__init__({username: password}, port=port, address=address)
        self.vm = vm

    def get_power_state(self) -> str:
        return "on" if self.vm.running else "off"

    def power_on(self) -> None:
        self.vm.power_on()

    def power_off(self) -> None:
        self.vm.power_off()

    def power_cycle(self) -> None:
        self.vm.reset()

    def power_reset(self) -> None:
        self.vm.reset()

    def power_shutdown(self) -> None:
        threading.Thread(target=self.vm.shutdown, daemon=True).start()

    def get_boot_device(self) -> str:
        return "network" if self.vm.boot_device() == "network" else "hd"

    _pending: str | None = None

    def set_boot_device(self, bootdevice: str) -> None:
        self._pending = DEVICES.get(bootdevice, "disk")

    def set_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        data = request["data"]
        if data and data[0] == 5 and len(data) >= 3:
            # Boot flags (IPMI 2.0 table 28-14): byte 1 bit 7 valid, bit 6 persistent.
            self._pending = None
            super().set_system_boot_options(request, session)
            device = self._pending
            if device in ("network", "disk"):
                self.vm.set_boot(
                    "network" if device == "network" else "disk", persistent=bool(data[1] & 0x40)
                )
                log.info(
                    "%s: next boot from %s%s",
                    self.vm.machine.name,
                    device,
                    " (persistent)" if data[1] & 0x40 else "",
                )
            return
        super().set_system_boot_options(request, session)


def serve_forever() -> threading.Thread:
    """Answer every BMC created in this process, on a daemon thread."""
    thread = threading.Thread(target=pyghmi_bmc.Bmc.listen, name="lab-bmcs", daemon=True)
    thread.start()
    return thread


def main() -> None:
    """One BMC from JSON on stdin: ``{"port", "username", "password", "name", "run_dir",
    "argv"}`` where ``argv`` is the command that stands for the powered-on server."""
    from pathlib import Path

    from arges.lab.machines import Machine, Nic, Smbios

    logging.basicConfig(level=logging.INFO, format="%(asctime)s bmc %(message)s")
    config = json.load(sys.stdin)
    machine = Machine(
        config["name"],
        "bios",
        Smbios(uuid="00000000-0000-0000-0000-000000000001"),
        (),
        (Nic("none", "00:00:00:00:00:00"),),
        Path(config["run_dir"]),
    )
    vm = VirtualMachine(machine, argv=config["argv"])
    LabBmc(vm, username=config["username"], password=config["password"], port=config["port"])
    print("ready", flush=True)
    try:
        pyghmi_bmc.Bmc.listen()
    finally:
        vm.power_off()


if __name__ == "__main__":
    main()
