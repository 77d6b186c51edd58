"""A lab server's serial console: attached from a terminal, or its log read back.

Each server's firmware (and iPXE, and later its kernel) writes to its serial port; QEMU logs
everything to ``console.log`` and serves the port on ``console.sock``, one client at a time.
:func:`attach` puts the terminal in raw mode and copies both ways until the user types
Ctrl-] (as telnet does) or the server powers off.
"""

from __future__ import annotations

import os
import select
import socket
import termios
import tty
from pathlib import Path

from arges.errors import ArgesError

DETACH = b"\x1d"
"""Ctrl-]."""


class ConsoleError(ArgesError):
    """The console cannot be reached (the server is off, or has no console yet)."""


def attach(path: Path, stdin: int, stdout: int) -> None:
    """Connect the terminal ``stdin``/``stdout`` (file descriptors) to the console socket.

    Raises:
        ConsoleError: the socket does not exist or refuses the connection.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise ConsoleError(f"cannot reach {path}: {exc.strerror or exc}") from exc
    saved = termios.tcgetattr(stdin)
    tty.setraw(stdin)
    try:
        _copy(sock, stdin, stdout)
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        sock.close()


def _copy(sock: socket.socket, stdin: int, stdout: int) -> None:
    while True:
        readable, _, _ = select.select([stdin, sock.fileno()], [], [])
        if stdin in readable:
            data = os.read(stdin, 1024)
            before, detach, _ = data.partition(DETACH)
            if before:
                sock.sendall(before)
            if detach or not data:
                return
        if sock.fileno() in readable:
            data = sock.recv(4096)
            if not data:
                return
            os.write(stdout, data)
