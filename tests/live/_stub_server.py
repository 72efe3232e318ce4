"""A real HTTP server on 127.0.0.1 (port 0) for the unit tests of :mod:`trim_rl.live`.

Each test gives a handler ``handler(req) -> body`` or ``-> (status, body)``; ``body`` is JSON-encoded
(a ``str`` or ``bytes`` body is sent as it is, a :class:`Trickle` byte by byte).  The server records
every request it received, in arrival order, the client port it came from, and how many were in flight
at once.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from collections.abc import Callable


@dataclass
class Request:
    method: str
    path: str
    payload: Any
    headers: dict
    index: int  # arrival order over the whole server
    t_start: float = 0.0
    t_end: float | None = None
    client_port: int = 0  # the TCP connection it came on


@dataclass
class Trickle:
    """A JSON body sent one byte every ``interval`` seconds (a server that is alive but too slow)."""

    body: Any
    interval: float = 1.0


@dataclass
class StubServer:
    handler: Callable[[Request], Any]
    requests: list[Request] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)  # request indexes in the order they were answered
    max_in_flight: int = 0
    errors: list[str] = field(default_factory=list)  # exceptions raised by the handler
    release: threading.Event = field(default_factory=threading.Event)  # set at close: sleeping handlers wake
    port: int = 0  # 0: any free port; a given one restarts a closed server where it was

    def __post_init__(self):
        self._lock = threading.Lock()
        self._connections: set = set()  # open client connections (kept alive between requests)
        self._in_flight = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with stub._lock:
                    stub._connections.add(self.connection)

            def finish(self):
                with stub._lock:
                    stub._connections.discard(self.connection)
                super().finish()

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _serve(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                payload = json.loads(raw) if raw else None
                with stub._lock:
                    req = Request(method, self.path, payload, dict(self.headers), len(stub.requests), time.perf_counter(),
                                  client_port=self.client_address[1])
                    stub.requests.append(req)
                    stub._in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub._in_flight)
                try:
                    out = stub.handler(req)
                except Exception as exc:  # a bug in the test's handler: answer 500, fail at teardown
                    stub.errors.append(f"{type(exc).__name__}: {exc}")
                    out = 500, {"error": {"message": "handler raised"}}
                finally:
                    with stub._lock:
                        stub._in_flight -= 1
                status, body = out if isinstance(out, tuple) else (200, out)
                trickle = body if isinstance(body, Trickle) else None
                if trickle is not None:
                    body = trickle.body
                if isinstance(body, bytes):
                    data, ctype = body, "application/octet-stream"
                elif isinstance(body, str):
                    data, ctype = body.encode(), "text/plain"
                else:
                    data, ctype = json.dumps(body).encode(), "application/json"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if trickle is None:
                        self.wfile.write(data)
                        self.wfile.flush()
                    for i in range(len(data) if trickle is not None else 0):
                        if stub.release.wait(trickle.interval):
                            return
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    return
                with stub._lock:
                    req.t_end = time.perf_counter()
                    stub.finished.append(req.index)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def on(self, path: str) -> list[Request]:
        """Requests received on ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def kill(self) -> None:
        """Die as a crashed server does: no new connections, and the open ones are cut."""
        import socket

        self.close()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def serve_fixture():
    """Body of the ``serve`` fixture: ``serve(handler)`` starts a server; all are closed at teardown,
    and a handler that raised fails the test."""
    servers: list[StubServer] = []

    def start(handler, port: int = 0) -> StubServer:
        s = StubServer(handler, port=port)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()
    errors = [e for s in servers for e in s.errors]
    assert not errors, f"stub server handler raised: {errors}"


def models(model_id: str = "stub-model") -> dict:
    """An OpenAI ``/v1/models`` answer."""
    return {"object": "list", "data": [{"id": model_id, "object": "model", "owned_by": "test"}]}


def not_found(req: Request):
    return 404, {"error": {"message": f"no route {req.method} {req.path}"}}
