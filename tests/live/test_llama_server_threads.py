"""A llama-server started by trim_rl answers while other clients hold connections open: each open
connection holds one of its HTTP threads, and the engines and the scorer of one routing loop each keep
a pool of them to the same server."""

from __future__ import annotations

import socket

import httpx
import pytest

from trim_rl.live.local import http_threads


def test_threads_grow_with_the_slots():
    assert http_threads(1) == 64 and http_threads(32) == 128


@pytest.mark.slow
def test_a_request_is_served_while_more_connections_than_slots_sit_open(new_server):
    server = new_server(parallel=2, n_ctx=512)
    host, port = server.url.removeprefix("http://").split(":")
    # silent connections, as idle keep-alive ones of other clients: each holds an HTTP thread for 5 s,
    # so with llama-server's default of parallel + 2 threads (4 here) these 48 would hold them all for
    # about a minute, twice the time the request below may wait
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(48)]
    try:
        r = httpx.post(server.url + "/v1/completions", json={"prompt": "2 + 2 =", "max_tokens": 1}, timeout=30)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 1
    finally:
        for s in held:
            s.close()
