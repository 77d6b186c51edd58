"""A lab server's life as a process: powered on is a running QEMU, powered off is none.

The BMC drives it. The boot device the BMC was last told applies at the next start only,
unless it was persistent (IPMI "boot flags valid" with or without "persistent"), after which
the server boots from its default device again, as real firmware does. A reset or a cycle is
a stop and a start, so a pending boot device takes effect (QEMU's own reset would keep the
boot order it was started with). An ISO image inserted into the virtual CD drive (Redfish
virtual media) is there from the next start on, until it is ejected.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from arges.errors import ArgesError
from arges.lab.machines import BootDevice, Machine, prepare_run_dir, qemu_argv

log = logging.getLogger(__name__)


class VmError(ArgesError):
    """A lab server's QEMU did not start (the end of its log included)."""


class VirtualMachine:
    """Starts, stops and resets one QEMU process (thread-safe: the BMC calls from its own
    thread). ``argv`` replaces QEMU (tests use a harmless long-running command)."""

    def __init__(
        self,
        machine: Machine,
        *,
        namespace: str | None = None,
        qemu: str = "qemu-system-x86_64",
        default_boot: BootDevice = "disk",
        argv: list[str] | None = None,
    ) -> None:
        self.machine = machine
        self.namespace = namespace
        self.qemu = qemu
        self.default_boot: BootDevice = default_boot
        self.next_boot: BootDevice | None = None
        self.last_boot: BootDevice | None = None
        self.argv_override = argv
        self.media: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def argv(self, boot: BootDevice) -> list[str]:
        """The QEMU command line booting from ``boot`` (inside the lab's namespace when set)."""
        argv = self.argv_override or qemu_argv(self.machine, boot, self.qemu, self.media)
        if self.namespace:
            argv = ["ip", "netns", "exec", self.namespace, *argv]
        return argv

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def set_boot(self, device: BootDevice, persistent: bool) -> None:
        """Boot from ``device`` at the next power-on only, or every time with ``persistent``."""
        with self._lock:
            if persistent:
                self.default_boot = device
                self.next_boot = None
            else:
                self.next_boot = device

    def boot_device(self) -> BootDevice:
        """The device the next power-on boots from."""
        return self.next_boot or self.default_boot

    def insert(self, image: Path | None) -> None:
        """Put ``image`` (an ISO file) into the CD drive, or empty it with None."""
        with self._lock:
            self.media = image

    def power_on(self) -> None:
        """Start QEMU from the next boot device (nothing when it runs already)."""
        with self._lock:
            if self.running:
                return
            boot = self.next_boot or self.default_boot
            self.next_boot = None
            self.last_boot = boot
            prepare_run_dir(self.machine)
            log_file = (self.machine.run_dir / "qemu.log").open("ab")
            self._proc = subprocess.Popen(
                self.argv(boot),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
            log_file.close()
            log.info(
                "%s: powered on, booting from %s (pid %d)", self.machine.name, boot, self._proc.pid
            )

    def wait_started(self, timeout: float = 30.0) -> None:
        """Return once QEMU answers on its QMP socket (it has opened its taps and disks).

        Raises:
            VmError: QEMU exited, or did not answer within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                raise VmError(f"{self.machine.name}: QEMU exited: {self._log_tail()}")
            if _qmp(self.machine.qmp_socket, None):
                return
            time.sleep(0.2)
        raise VmError(f"{self.machine.name}: QEMU did not start within {timeout:.0f} s")

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.machine.run_dir / "qemu.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def power_off(self) -> None:
        """Stop QEMU: SIGTERM, then SIGKILL after 10 s (nothing when it is off)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("%s: powered off", self.machine.name)

    def reset(self) -> None:
        """Power off, then on (a cold reset: QEMU starts again)."""
        self.power_off()
        self.power_on()

    def shutdown(self, grace: float = 30.0) -> None:
        """An ACPI power-button press; powered off hard if the guest ignores it."""
        if self.running and _qmp(self.machine.qmp_socket, "system_powerdown"):
            deadline = time.monotonic() + grace
            while self.running and time.monotonic() < deadline:
                time.sleep(0.5)
        self.power_off()


def qmp_answers(machine: Machine) -> bool:
    """Whether ``machine``'s QEMU answers on its QMP socket (it runs, taps and disks open)."""
    return _qmp(machine.qmp_socket, None)


def _qmp(path: Path, command: str | None) -> bool:
    """Send one QMP command (None: just read the greeting); False when QEMU's monitor cannot
    be reached."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            with sock.makefile("rb") as reader:
                if not reader.readline():
                    return False
                if command is None:
                    return True
                for execute in ("qmp_capabilities", command):
                    sock.sendall(json.dumps({"execute": execute}).encode() + b"\n")
                    reader.readline()
        return True
    except OSError:
        return False
