"""Sockets of the servers this package starts (the step-routing server, the simulated backend)."""

from __future__ import annotations

import socket
import sys


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


def serve_until_stopped(server, sock: socket.socket, banner: str, stopped: str,
                        signals: tuple[type[BaseException], ...] = (KeyboardInterrupt,)) -> int:
    """Run a ``uvicorn.Server`` on ``sock`` until a signal stops it (uvicorn drains, then re-raises the
    signal as one of ``signals``), with ``banner`` before and ``stopped`` after on stderr; exit code 0."""
    print(banner, file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    except signals:
        pass
    print(stopped, file=sys.stderr)
    return 0
