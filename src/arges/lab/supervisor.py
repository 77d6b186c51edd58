"""The lab's supervisor: the one detached process that keeps a lab's long-lived parts running.

``arges lab up`` starts ``python -m arges.lab.supervisor LAB_DIR READY_FD`` in a session of
its own and returns once the supervisor says it is ready. The supervisor reads
``state.json`` and the BMC credentials (``credentials.json``, mode 0600: passwords never
travel in argv), then starts:

1. the site DHCP server (dnsmasq, when the lab has one), waiting until it has bound;
2. one :class:`~arges.lab.bmc.LabBmc` per IPMI server on its port, all answered by pyghmi's
   loop on one thread; each BMC owns its server's QEMU process (:class:`~arges.lab.vm.
   VirtualMachine`, booting from the network unless told otherwise);
3. one process per Redfish server (``python -m arges.lab.redfish``, sushy-tools' emulator:
   one Flask application per process), which owns its server's QEMU process and logs to the
   server's ``bmc.log``;
4. the servers, powered on like a rack someone just switched on, each confirmed running
   (QEMU answers on its QMP socket; a Redfish BMC also accepts connections).

It then writes one JSON line to ``READY_FD``: ``{"ready": true}``, or ``{"error": "..."}``
after undoing what it started. On SIGTERM or SIGINT it powers the servers off (and stops the
Redfish BMCs, which power theirs off) and stops dnsmasq. It logs to standard error, which
``lab up`` points at ``LAB_DIR/supervisor.log``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from arges.errors import ArgesError
from arges.lab.bmc import LabBmc, serve_forever
from arges.lab.sitedhcp import dnsmasq_argv
from arges.lab.state import LabServer, LabState, load_credentials, load_state
from arges.lab.vm import VirtualMachine, VmError, qmp_answers

log = logging.getLogger(__name__)

DNSMASQ_LOG = "dnsmasq.log"
REDFISH_LOG = "bmc.log"
DNSMASQ_BOUND = "DHCP, sockets bound exclusively to interface"


class SupervisorError(ArgesError):
    """Something the lab needs did not start (the message says what and why)."""


class Supervisor:
    """The running parts of one lab (see the module docstring)."""

    def __init__(self, lab_dir: Path, state: LabState) -> None:
        self.lab_dir = lab_dir
        self.state = state
        self.vms: list[VirtualMachine] = []
        self.redfish: list[subprocess.Popen[bytes]] = []
        self.dnsmasq: subprocess.Popen[bytes] | None = None

    def start(self, start_timeout: float = 60.0) -> None:
        """Start everything, or raise SupervisorError having stopped what had started."""
        try:
            self._start(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, start_timeout: float) -> None:
        credentials = load_credentials(self.lab_dir)
        if self.state.site_dhcp:
            self._start_dnsmasq(start_timeout)
        for server in self.state.servers:
            if server.bmc_kind == "redfish":
                continue
            vm = VirtualMachine(
                server.machine(self.state.ovmf_code),
                namespace=self.state.network.namespace,
                qemu=self.state.qemu,
                default_boot="network",
            )
            login = credentials.get(server.name)
            if login is None:
                raise SupervisorError(f"{server.name}: no BMC credentials in the lab's files")
            try:
                LabBmc(
                    vm,
                    username=login.username,
                    password=login.password,
                    port=server.bmc_port,
                    address=server.bmc_address,
                )
            except OSError as exc:
                raise SupervisorError(
                    f"{server.name}: BMC cannot listen on {server.bmc_address}:"
                    f"{server.bmc_port}: {exc}"
                ) from exc
            self.vms.append(vm)
            log.info("%s: BMC on %s:%d", server.name, server.bmc_address, server.bmc_port)
        serve_forever()
        redfish = [s for s in self.state.servers if s.bmc_kind == "redfish"]
        for server in redfish:
            if server.name not in credentials:
                raise SupervisorError(f"{server.name}: no BMC credentials in the lab's files")
            with (server.run_dir / REDFISH_LOG).open("ab") as out:
                self.redfish.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "arges.lab.redfish", str(self.lab_dir), server.name],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=out,
                    )
                )
        for vm in self.vms:
            vm.power_on()
        for vm in self.vms:
            try:
                vm.wait_started(start_timeout)
            except VmError as exc:
                raise SupervisorError(str(exc)) from exc
        for server, proc in zip(redfish, self.redfish, strict=True):
            self._wait_redfish(server, proc, start_timeout)

    def _wait_redfish(
        self, server: LabServer, proc: subprocess.Popen[bytes], timeout: float
    ) -> None:
        """Until the server's Redfish BMC accepts connections and its QEMU answers."""
        machine = server.machine(self.state.ovmf_code)
        deadline = time.monotonic() + timeout
        while not (_accepts(server.bmc_address, server.bmc_port) and qmp_answers(machine)):
            if proc.poll() is not None or time.monotonic() > deadline:
                log_path = server.run_dir / REDFISH_LOG
                tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
                qemu = (server.run_dir / "qemu.log").read_text(errors="replace").strip()
                raise SupervisorError(
                    f"{server.name}: the Redfish BMC or its QEMU did not start: "
                    f"{' | '.join(qemu.splitlines()[-3:]) or tail or 'no log'}"
                )
            time.sleep(0.2)
        log.info("%s: Redfish BMC on %s", server.name, server.bmc_url)

    def _start_dnsmasq(self, timeout: float) -> None:
        log_path = self.lab_dir / DNSMASQ_LOG
        argv = dnsmasq_argv(self.state.network, self.lab_dir / "dnsmasq.leases")
        with log_path.open("ab") as out:
            self.dnsmasq = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while DNSMASQ_BOUND not in log_path.read_text(errors="replace"):
            if self.dnsmasq.poll() is not None or time.monotonic() > deadline:
                tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
                raise SupervisorError(f"the site DHCP server (dnsmasq) did not start: {tail}")
            time.sleep(0.1)
        log.info("site DHCP: dnsmasq (pid %d) on %s", self.dnsmasq.pid, self.state.network.bridge)

    def stop(self) -> None:
        """Power every server off and stop dnsmasq; safe to call more than once."""
        threads = [threading.Thread(target=vm.power_off) for vm in self.vms]
        for thread in threads:
            thread.start()
        for proc in self.redfish:
            if proc.poll() is None:
                proc.terminate()
        for thread in threads:
            thread.join()
        for proc in self.redfish:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            try:
                self.dnsmasq.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.dnsmasq.kill()
                self.dnsmasq.wait()


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m arges.lab.supervisor LAB_DIR READY_FD`` (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    lab_dir, ready = Path(args[0]), os.fdopen(int(args[1]), "w")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        state = load_state(lab_dir)
        if state is None:
            raise SupervisorError(f"no lab in {lab_dir}")
        supervisor = Supervisor(lab_dir, state)
        supervisor.start()
    except Exception as exc:
        log.error("the lab did not start: %s", exc)
        ready.write(json.dumps({"error": str(exc)}) + "\n")
        ready.close()
        return 1
    ready.write(json.dumps({"ready": True}) + "\n")
    ready.close()
    log.info("the lab is up: %d server(s)", len(supervisor.vms))
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("stopping the lab")
        supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
