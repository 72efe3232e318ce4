"""A bounded load test on loopback: 64 concurrent clients send 256 requests to the server (a
subprocess) in front of backends answering as vLLM does; the strong backend is killed a third of the
way in and restarted two thirds in.  Every request is answered exactly once; only requests that
needed the strong model while it was down fail (502/504 naming it); new requests succeed after the
restart."""

from __future__ import annotations

import asyncio
import statistics
import time

import openai
import pytest
from _serve import ServeProcess, metric, metrics, serve_args, stub_backends
from _stub_server import serve_fixture

CLIENTS, REQUESTS = 64, 256


@pytest.fixture
def serve():
    yield from serve_fixture()


def test_64_clients_256_requests_with_the_strong_backend_killed_and_restarted(serve, tmp_path):
    weak, strong, prm = stub_backends(serve, where="#regen", delay=0.005)
    port = int(strong.url.rsplit(":", 1)[1])
    proc = ServeProcess(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--timeout", 2, "--retries", 1),
                        tmp_path / "serve.log")
    state = {"strong": strong}
    # even requests need the strong model at their second step, odd ones never do
    problems = [f"What is {i} + 2? {'#regen' if i % 2 == 0 else '#keep'}" for i in range(REQUESTS)]
    answers: dict[int, list] = {i: [] for i in range(REQUESTS)}

    async def run() -> list[float]:
        client = openai.AsyncOpenAI(base_url=proc.url + "/v1", api_key="none", max_retries=0, timeout=120)
        todo = list(range(REQUESTS))
        latencies, done = [], [0]

        async def worker():
            while todo:
                i = todo.pop(0)
                t0 = time.perf_counter()
                try:
                    r = await client.chat.completions.create(model="thr:0.5",
                                                             messages=[{"role": "user", "content": problems[i]}])
                    answers[i].append(r)
                except openai.APIStatusError as exc:
                    answers[i].append(exc)
                latencies.append(time.perf_counter() - t0)
                done[0] += 1
                if done[0] == REQUESTS // 3:
                    state["strong"].kill()  # connections cut, and refused from now on
                elif done[0] == 2 * REQUESTS // 3:
                    state["strong"] = serve(state["strong"].handler, port=port)  # back, on the same port

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        after = await asyncio.gather(*(client.chat.completions.create(
            model="thr:0.5", messages=[{"role": "user", "content": f"What is {i} + 3? #regen"}]) for i in range(16)))
        assert all(r.usage.interventions == 1 for r in after)  # the strong backend serves again
        await client.close()
        return latencies

    try:
        latencies = asyncio.run(run())
        m = metrics(proc.url)
    finally:
        assert proc.stop() == 0
    q = statistics.quantiles(latencies, n=20)
    print(f"\n{REQUESTS} requests from {CLIENTS} clients: p50 {statistics.median(latencies) * 1e3:.0f} ms, "
          f"p95 {q[18] * 1e3:.0f} ms; {len([a for (a,) in answers.values() if isinstance(a, Exception)])} failed "
          f"while the strong backend was down")
    assert all(len(a) == 1 for a in answers.values())  # each answered exactly once
    ok = {i for i, (a,) in answers.items() if not isinstance(a, Exception)}
    failed = {i: a for i, (a,) in answers.items() if isinstance(a, Exception)}
    assert len({answers[i][0].id for i in ok}) == len(ok)
    assert failed, "the kill was not felt"
    for i, exc in failed.items():
        assert i % 2 == 0, f"request {i} did not need the strong backend and failed: {exc}"
        assert exc.status_code in (502, 504) and "the strong backend" in exc.body["message"]
        assert str(port) not in exc.body["message"]  # its role, never its address
    assert all(i in ok for i in range(1, REQUESTS, 2))  # the rest succeed
    assert all(answers[i][0].usage.steps == 3 for i in ok)
    # the server counted each request once, and holds none
    assert metric(m, "trim_requests_total") == REQUESTS + 16
    assert metric(m, "trim_requests_total", status="200") == len(ok) + 16
    assert metric(m, "trim_requests_active") == 0 and metric(m, "trim_requests_queued") == 0
    assert metric(m, "trim_backend_errors_total", backend="strong") >= 1
