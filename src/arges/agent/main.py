"""The agent's main sequence (``python3 -m arges.agent``, started by the image's ``/init``).

1. read ``/proc/cmdline`` (:mod:`arges.agent.cmdline`) and bring up the boot NIC;
2. collect the inventory (:mod:`arges.agent.collect`);
3. target mode (``talos.config=``): fetch, check and write the machine config, report
   ``installed``, stay up (:mod:`arges.agent.target`);
4. otherwise register (retrying with backoff, logging what Arges says) and follow
   instructions for as long as the machine runs: ``wait`` (report ``idle`` after
   ``pollSeconds``), ``wipe`` (heartbeats every few seconds, then ``wiped`` or
   ``wipe-failed``), ``reboot`` and ``poweroff`` (sync, then busybox ``reboot -f`` /
   ``poweroff -f``).

Unlike Sidero's agent it does not reboot on its own to make progress: an unaccepted server
waits, polling, instead of looping through reboots (sidero#988). The one exception is a
credential Arges keeps refusing (403) for ``REFUSED_REBOOT_SECONDS``: only a new boot brings
a new one (see :mod:`arges.wire`).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arges.agent import cmdline, collect, net, target, wipe
from arges.agent.client import Arges, HttpError, request, with_retries
from arges.wire import REFUSED_REBOOT_SECONDS, Instruction, Registration, Report

log = logging.getLogger("arges.agent")

HEARTBEAT_SECONDS = 5.0
"""Between ``wiping`` reports; Arges wants one at least every 10 s."""
RETRY_SECONDS = 10.0
"""Before trying again after a failed wipe, install, or network setup."""


def _addresses(hardware: dict[str, Any]) -> list[str]:
    return [
        address.split("/")[0]
        for nic in hardware["network"]["interfaces"]
        for address in nic["addresses"]
    ]


class Refusals:
    """Reboots for a new credential once Arges has refused this one (403) for ``patience``
    seconds in a row (see the module docstring)."""

    def __init__(
        self,
        patience: float = REFUSED_REBOOT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        reboot: Callable[[], None] | None = None,
    ) -> None:
        self.patience = patience
        self.clock = clock
        self.reboot = reboot or functools.partial(power, "reboot")
        self._since: float | None = None

    def __call__(self, attempt: Callable[[], Any]) -> Callable[[], Any]:
        """``attempt`` watched: its 403s counted, any success resetting the count."""

        def watched() -> Any:
            try:
                result = attempt()
            except HttpError as exc:
                if exc.status == 403:
                    self._since = self._since if self._since is not None else self.clock()
                    if self.clock() - self._since >= self.patience:
                        log.error("Arges refuses this boot's credential; rebooting for a new one")
                        self.reboot()
                raise
            self._since = None
            return result

        return watched


class Agent:
    """One registered server's agent: follows Arges' instructions."""

    def __init__(
        self, arges: Arges, registration: Registration, refusals: Refusals | None = None
    ) -> None:
        self.arges = arges
        self.registration = registration
        self.uuid = registration.uuid
        self.refusals = refusals or Refusals()

    def register(self) -> Instruction:
        """Register, retrying until Arges accepts."""
        instruction: Instruction = with_retries(
            "registering", self.refusals(lambda: self.arges.register(self.registration))
        )
        log.info("registered as server %s", self.uuid)
        return instruction

    def send(self, report: Report) -> Instruction:
        """Send ``report``, retrying; a refusal (4xx: say, the Server was deleted) is
        answered by registering again."""

        def attempt() -> Instruction:
            try:
                return self.arges.report(report)
            except HttpError as exc:
                if not 400 <= exc.status < 500:
                    raise
                log.warning("Arges refused the %s report: %s; registering again", report.phase, exc)
                return self.arges.register(self.registration)

        result: Instruction = with_retries(f"reporting {report.phase}", self.refusals(attempt))
        return result

    def run(self) -> None:
        """Register, then follow instructions forever (or until reboot or poweroff)."""
        instruction = self.register()
        failed = False
        while True:
            log.info(
                "Arges says: %s%s",
                instruction.action,
                f" ({instruction.reason})" if instruction.reason else "",
            )
            if instruction.action == "wait":
                time.sleep(instruction.poll_seconds)
                instruction = self.send(Report(self.uuid, "idle"))
            elif instruction.action == "wipe":
                if failed:
                    time.sleep(RETRY_SECONDS)
                report = self.wipe_disks(instruction.wipe_mode)
                failed = report.phase == "wipe-failed"
                instruction = self.send(report)
            else:
                power(instruction.action)

    def wipe_disks(self, mode: wipe.Mode) -> Report:
        """Wipe every writable disk, heartbeating; the outcome as a report."""
        disks = wipe.disks()
        total = wipe.total_bytes(disks, mode)
        progress = wipe.Progress(total)
        names = ", ".join(d.name for d in disks) or "none"
        log.info("wiping (%s) %d disk(s): %s; %d MiB to zero", mode, len(disks), names, total >> 20)
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                message = f"wiping ({mode}) {names}: {progress.percent()}% of {total >> 20} MiB"
                log.info("%s", message)
                self._beat(Report(self.uuid, "wiping", message=message))

        self._beat(Report(self.uuid, "wiping", message=f"wiping ({mode}) {names}"))
        beat = threading.Thread(target=heartbeat, name="heartbeat", daemon=True)
        beat.start()
        started = time.monotonic()
        try:
            results = wipe.wipe(disks, mode, progress)
        except OSError as exc:
            log.error("wipe failed: %s", exc)
            return Report(self.uuid, "wipe-failed", message=str(exc))
        finally:
            done.set()
            beat.join()
        elapsed = time.monotonic() - started
        zeroed = sum(r["bytesZeroed"] for r in results)
        log.info("wiped %d disk(s): %d bytes zeroed in %.1f s", len(results), zeroed, elapsed)
        return Report(self.uuid, "wiped", wiped=results)

    def _beat(self, report: Report) -> None:
        try:
            self.arges.report(report)
        except HttpError as exc:
            log.warning("heartbeat failed: %s", exc)


def power(action: str) -> None:
    """Sync the disks, then reboot or power off at once (busybox ``-f``: no init to ask)."""
    log.info("%s now", "rebooting" if action == "reboot" else "powering off")
    os.sync()
    subprocess.run([action, "-f"], check=False)
    while True:
        time.sleep(60)


def install(url: str, uuid: str, refusals: Refusals | None = None) -> None:
    """Target mode (see :mod:`arges.agent.target`): returns once the config is on disk and
    Arges has been told; a config that fails the check, or a disk that cannot be written,
    is reported as ``install-failed`` and fetched again after a delay."""
    source = target.config_url(url, uuid)
    arges = Arges(target.origin(source), target.token(source))
    refusals = refusals or Refusals()
    while True:
        payload: bytes = with_retries(
            f"fetching the machine config from {target.redacted(source)}",
            refusals(lambda: request(source)),
        )
        report = _install(uuid, payload)
        log.log(logging.INFO if report.phase == "installed" else logging.ERROR, report.message)
        with_retries(f"reporting {report.phase}", refusals(functools.partial(arges.report, report)))
        if report.phase == "installed":
            return
        time.sleep(RETRY_SECONDS)


def _install(uuid: str, config: bytes) -> Report:
    reason = target.check(config.decode(errors="replace"))
    if reason:
        return Report(uuid, "install-failed", message=reason)
    disks = wipe.disks()
    if not disks:
        return Report(uuid, "install-failed", message="no writable disk for the machine config")
    try:
        target.install(disks[0].path, config)
    except OSError as exc:
        message = f"cannot write the machine config to {disks[0].path}: {exc}"
        return Report(uuid, "install-failed", message=message)
    message = f"machine config ({len(config)} bytes) written to {disks[0].path}"
    return Report(uuid, "installed", message=message)


def _network(mac: str, static: cmdline.StaticIp | None) -> None:
    while not net.bring_up(mac, static=static):
        log.warning("no network yet; trying again in %.0f s", RETRY_SECONDS)
        time.sleep(RETRY_SECONDS)


def main() -> int:
    """Run the agent; returns only on a configuration error (the image's ``/init`` then
    starts it again after a delay)."""
    logging.basicConfig(level=logging.INFO, format="arges-agent: %(message)s", stream=sys.stdout)
    args = cmdline.parse(Path("/proc/cmdline").read_text())
    if not args.url and not args.talos_config:
        log.error("neither arges.url= nor talos.config= is on the kernel command line")
        return 2
    log.info("bringing up the network%s", f" on {args.mac}" if args.mac else "")
    _network(args.mac, args.static)
    hardware = collect.inventory()
    uuid = hardware["system"]["uuid"]
    system = hardware["system"]
    log.info(
        "this is %s %s (SMBIOS UUID %s): %d core(s), %d MiB, %d disk(s), %d NIC(s)",
        system["manufacturer"] or "?",
        system["productName"] or "?",
        uuid or "missing",
        hardware["compute"]["totalCoreCount"],
        hardware["memory"]["totalSize"] >> 20,
        hardware["storage"]["deviceCount"],
        hardware["network"]["interfaceCount"],
    )
    if args.talos_config:
        install(args.talos_config, uuid)
        log.info("installed; staying up, as Talos would")
        while True:
            time.sleep(3600)
    registration = Registration(
        uuid=uuid,
        hardware=hardware,
        hostname="" if socket.gethostname() == "(none)" else socket.gethostname(),
        addresses=_addresses(hardware),
        boot_mac=args.mac,
    )
    Agent(Arges(args.url, args.token), registration).run()
    return 0
