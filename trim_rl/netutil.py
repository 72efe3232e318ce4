"""Sockets of the servers this package starts (the step-routing server, the simulated backend)."""

from __future__ import annotations

import socket


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that a bad host or a port in use is a one-line user error
    (``ValueError`` naming ``--host`` or ``--port``) before any work."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ValueError(f"--host {host!r}: {exc.strerror}") from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(info[4])
    except OSError as exc:
        sock.close()
        raise ValueError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(2048)
    return sock
