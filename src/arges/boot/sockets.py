"""Listening sockets for the boot services, bound to the address servers are told.

The boot HTTP and TFTP ports listen on ``--boot-address`` only, never on every address of
the host (what they serve is for the provisioning network). That address may not exist yet
when Arges starts (the lab's ``arges0`` appears with ``arges lab up``), so the sockets are
bound with ``IP_FREEBIND`` (Linux, ``ip(7)``): the bind succeeds now and traffic flows once
the address is configured, as systemd's ``FreeBind=`` does it.
"""

from __future__ import annotations

import socket

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
"""``ip(7)``'s option number on Linux; Python 3.11's socket module does not name it."""


def bound(kind: socket.SocketKind, host: str, port: int) -> socket.socket:
    """A socket of ``kind`` (stream: listening) bound to ``host:port``, non-blocking.

    Raises:
        OSError: the port cannot be bound (taken, or below 1024 without the privilege).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        level = socket.IPPROTO_IPV6 if family == socket.AF_INET6 else socket.IPPROTO_IP
        sock.setsockopt(level, IP_FREEBIND, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
