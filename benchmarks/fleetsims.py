"""The fleet benchmark's simulated servers, in a process of their own, and the fake BMCs
they share with the plane.

The simulated servers (``tests/integration/clusters/sim.py``) follow their fake BMC
(``arges.power.fake``), which lives in memory. Run in the plane's process they took a tenth
of its CPU on a thread of their own and, sharing its GIL, made the plane's thread dearer (a
busy thread beside it raised its CPU per API request by a fifth to a half): a measurement of
the benchmark's, not of Arges. Here each BMC's state is kept in a file both processes map
(:class:`Board`): the plane's fake driver, in the benchmark's process, reads and sets the
power and boot device there, and counts the boots it causes; the servers, in this one, do
the same for what they do themselves (the power button, an agent's reboot or power-off),
and note how far they got (registered, wiped, installed) for the benchmark to wait on.
Refused for a while (a busy plane answers 503 with ``Retry-After``), they wait as long as
they are told, as Arges' agent does: asking again every quarter second, as the cluster
tests' few machines do, a thousand of them kept a slowed plane answering refusals (90,000
in a 1,000-server run under tracemalloc).

    .venv/bin/python benchmarks/fleetsims.py BOARD SERVERS BOOT_URL KUBECONFIG TICK POLL

prints ``ready``, powers every server on at a ``go`` line on its standard input, and stops
them at the next line (or at the end of its input).
"""

from __future__ import annotations

import asyncio
import mmap
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.clusters.sim import BOOTS, SimServer, bmc_of, uuid_of

from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.power import fake
from arges.power.base import BootDevice, PowerState

SLOT = 8
"""Unsigned 32-bit cells per machine on the board."""
POWER, DEVICE, PLANE_BOOTS, OWN_BOOTS, PROGRESS = range(5)
"""Each machine's cells: its power state and boot device (indexes into :data:`POWERS` and
:data:`DEVICES`), the boots (on, cycle, reset) the plane's driver and the machine itself
caused, each counted by its only writer, and the machine's progress (flags)."""
REGISTERED, WIPED, INSTALLED, BOOTED = 1, 2, 4, 8
POWERS = (PowerState.OFF, PowerState.ON, PowerState.UNKNOWN)
DEVICES = (BootDevice.DISK, BootDevice.NETWORK, BootDevice.CD, BootDevice.HTTP)
"""A zeroed cell is a machine powered off that boots from its disk, as a new FakeMachine."""


def bmc_key(index: int) -> str:
    """The fake BMC of simulated server ``index`` (from 1), as ``arges.power.fake`` keys it."""
    return f"{bmc_of(index)}:623"


def server_uuid(index: int) -> str:
    """The UUID (and Server name) of simulated server ``index`` (from 1)."""
    return uuid_of(index)


class Board:
    """The BMCs' state of ``servers`` machines in the file at ``path``, mapped (a new file of
    zeroes when ``create``)."""

    def __init__(self, path: Path, servers: int, *, create: bool) -> None:
        if create:
            path.write_bytes(bytes(4 * SLOT * servers))
        self.servers = servers
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), 0)
        self._view = memoryview(self._map)
        self.cells = self._view.cast("I")

    def cell(self, index: int, what: int) -> int:
        """Cell ``what`` of server ``index`` (from 1)."""
        return int(self.cells[(index - 1) * SLOT + what])

    def note(self, index: int, flag: int) -> None:
        """Server ``index`` got as far as ``flag``."""
        self.cells[(index - 1) * SLOT + PROGRESS] |= flag

    def done(self, index: int, flag: int) -> bool:
        return bool(self.cell(index, PROGRESS) & flag)

    def power(self, index: int) -> PowerState:
        return POWERS[self.cell(index, POWER)]

    def machines(self, counter: int) -> dict[str, fake.FakeMachine]:
        """Every server's BMC as ``arges.power.fake.MACHINES`` holds them; the boots their
        actions cause are counted in ``counter`` (``PLANE_BOOTS`` or ``OWN_BOOTS``)."""
        return {bmc_key(i): SharedMachine(self, i, counter) for i in range(1, self.servers + 1)}

    def close(self) -> None:
        self.cells.release()
        self._view.release()
        self._map.close()
        self._file.close()


class Actions(list[str]):
    """A machine's actions, as the fake driver records them; the boots among them are also
    counted on the board."""

    def __init__(self, board: Board, cell: int) -> None:
        super().__init__()
        self._cells = board.cells
        self._cell = cell

    def append(self, action: str) -> None:
        super().append(action)
        if action in BOOTS:
            self._cells[self._cell] += 1


class _OnBoard:
    """A field of :class:`SharedMachine` kept in cell ``what`` of its slot, as an index
    into ``values``."""

    def __init__(self, what: int, values: tuple[Any, ...]) -> None:
        self.what = what
        self.values = values

    def __get__(self, machine: SharedMachine, owner: type | None = None) -> Any:
        return self.values[machine._cells[machine._at + self.what]]

    def __set__(self, machine: SharedMachine, value: Any) -> None:
        machine._cells[machine._at + self.what] = self.values.index(value)


class SharedMachine(fake.FakeMachine):
    """A fake BMC whose power state and boot device are on the board (the rest, faults and
    credentials, stay in the process: the fleet injects none)."""

    def __init__(self, board: Board, index: int, counter: int) -> None:
        # Not the dataclass's __init__: it would reset the board's cells, which the other
        # process may have set already.
        self._cells = board.cells
        self._at = (index - 1) * SLOT
        self.persistent = False
        self.password = "secret"
        self.faults = fake.Faults()
        self.actions = Actions(board, self._at + counter)
        self.media = None
        self.reads = 0

    power = _OnBoard(POWER, POWERS)
    boot_device = _OnBoard(DEVICE, DEVICES)


class FleetServer(SimServer):
    """A simulated server that notes on the board when it registered, was wiped and
    installed, and runs no Talos API (the fleet's life ends at config delivery)."""

    board: Board | None = None
    _boots_seen: int = 0

    def _note(self, flag: int) -> None:
        assert self.board is not None
        self.board.note(self.index, flag)

    def _booted_again(self) -> bool:
        # The plane's boots and its own, each counted by its writer.
        assert self.board is not None
        boots = self.board.cell(self.index, PLANE_BOOTS) + self.board.cell(self.index, OWN_BOOTS)
        again, self._boots_seen = boots != self._boots_seen, boots
        return again

    async def _boot(self) -> None:
        self._note(BOOTED)
        await super()._boot()

    async def _post(self, path: str, body: dict[str, Any], base: str | None = None) -> Any:
        # A report is noted when sent: the plane may power the server off (which ends this
        # task) before the answer to its "wiped" report is back.
        if body.get("phase") == "wiped":
            self._note(WIPED)
        elif body.get("phase") == "installed":
            self._note(INSTALLED)
        answer = await super()._post(path, body, base)
        if path.endswith("/register"):
            self._note(REGISTERED)
        return answer

    async def _run_talos(self) -> None:
        return None


class Sims:
    """The simulated servers' process, seen from the benchmark (see the module docstring)."""

    def __init__(
        self,
        board: Path,
        servers: int,
        boot_url: str,
        kubeconfig: Path,
        *,
        tick: float,
        poll: float,
        log: IO[bytes] | None = None,
    ) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                *(str(board), str(servers), boot_url, str(kubeconfig), str(tick), str(poll)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != b"ready":
            raise SystemExit(f"the simulated servers did not start (exit {self.process.wait()})")

    def _say(self, line: str) -> None:
        stdin: IO[bytes] | None = self.process.stdin
        assert stdin is not None
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    def go(self) -> None:
        """Every server's power button is pressed."""
        self._say("go")

    def stop(self) -> None:
        """The servers stop (their HTTP sessions closed) and the process ends."""
        self._say("stop")
        self.process.wait(60)


async def serve(board_path: str, servers: str, boot_url: str, kubeconfig: str, *rest: str) -> None:
    """The process of the simulated servers (see the module docstring)."""
    tick, poll = float(rest[0]), float(rest[1])
    board = Board(Path(board_path), int(servers), create=False)
    fake.MACHINES.update(board.machines(OWN_BOOTS))
    async with KubeClient(from_kubeconfig(Path(kubeconfig)), component="fleet-sims") as kube:
        # Each leaves from its own loopback address: the plane answers a machine only there.
        sims = [
            FleetServer(i, boot_url, 1, kube, tick=tick, poll=poll, honours_retry_after=True)
            for i in range(1, board.servers + 1)
        ]
        for sim in sims:
            sim.board = board
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        tasks = []
        for sim in sims:
            sim.power_on()
            tasks.append(asyncio.create_task(sim.run()))
        await asyncio.to_thread(sys.stdin.readline)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sim in sims:
            await sim.close()
    fake.MACHINES.clear()
    board.close()


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:]))
