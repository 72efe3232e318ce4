"""The async engine and scorer API: coroutines awaiting one engine (or scorer) at once on one event loop
get exactly what sequential calls get, their requests really are in flight together, and a cancelled
call leaves the loop and the other calls alone.  Against local servers that answer as ``vllm serve``."""

from __future__ import annotations

import asyncio
import threading
import zlib

import pytest
from _stub_server import serve_fixture
from _vllm import STEP_TAG, FakeVLLM

from trim_rl.live.aio import run_sync
from trim_rl.live.engines import OpenAICompatibleEngine, Sampling, StepRequest
from trim_rl.live.http import HTTPSettings
from trim_rl.live.prm import SelfVerifyScorer, VLLMPoolingPRM

HTTP = HTTPSettings(timeout=30.0, retries=0, concurrency=8)


@pytest.fixture
def serve():
    yield from serve_fixture()


def _h(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def gen(prompt: str, payload: dict) -> tuple:
    """A step that depends on the prompt and the request's seed only."""
    return f"Step {_h(prompt) % 997} (seed {payload.get('seed')}).", "stop", "\n\n"


def prm(prompt: str) -> list[float]:
    return [(_h(prompt[: i + 1]) % 100) / 100 for i, c in enumerate(prompt) if prompt.startswith(STEP_TAG, i)]


def top(prompt: str) -> dict:
    return {"yes": -0.1 - (_h(prompt) % 50) / 10, "no": -1.0}


class Gated:
    """A FakeVLLM whose generation and pooling requests, once ``hold(n)`` is called, each wait until ``n``
    are in flight together: calls made one after the other never get there (the barrier breaks, the
    handler raises, the request fails and the test with it)."""

    def __init__(self, inner: FakeVLLM):
        self.inner, self.barrier = inner, None

    def hold(self, n: int) -> None:
        self.barrier = threading.Barrier(n, timeout=20)

    def __call__(self, req):
        if self.barrier is not None and req.path in ("/v1/completions", "/pooling"):
            self.barrier.wait()
        return self.inner(req)


def test_coroutines_awaiting_one_engine_at_once_get_what_sequential_calls_get(serve):
    backend = Gated(FakeVLLM(model="m", gen=gen))
    srv = serve(backend)
    # sampled: one request per prompt, each with its own seed (8 requests over the 4 calls)
    eng = OpenAICompatibleEngine(srv.url, sampling=Sampling(temperature=0.7), http=HTTP)
    calls = [[StepRequest(f"problem {i}", ("First step.",) * j, seed=10 * i + j) for j in range(2)] for i in range(4)]
    sequential = [eng.generate(c) for c in calls]  # the sync API, one call after the other

    backend.hold(8)

    async def together():
        try:
            return await asyncio.gather(*(eng.agenerate(c) for c in calls))
        finally:
            await eng.client.aclose()

    concurrent = asyncio.run(together())
    assert concurrent == sequential
    assert [[r.prompt_tokens for r in c] for c in concurrent] == [[r.prompt_tokens for r in c] for c in sequential]
    assert {r.text for c in concurrent for r in c} == {r.text for c in sequential for r in c}
    assert len({r.text for c in concurrent for r in c}) == 8  # every prompt and seed its own step
    assert srv.max_in_flight == 8


def test_coroutines_awaiting_scorers_at_once_get_what_sequential_calls_get(serve):
    backend = Gated(FakeVLLM(model="m", gen=gen, prm=prm, top=top))
    srv = serve(backend)
    pooling, verify = VLLMPoolingPRM(srv.url, model="m", http=HTTP), SelfVerifyScorer(srv.url, http=HTTP)
    calls = [[(f"problem {i}", [f"step {k} of {i}" for k in range(j + 1)]) for j in range(3)] for i in range(4)]
    expected = [[pooling.score_last_detail(c) for c in calls], [verify.score_last_detail(c) for c in calls]]
    every = [pooling.score(c) for c in calls]

    backend.hold(8)  # each call is one request (one /pooling, one /v1/completions): 4 of each at once

    async def together():
        got = await asyncio.gather(*(s.ascore_last_detail(c) for s in (pooling, verify) for c in calls))
        backend.hold(4)
        got_every = await asyncio.gather(*(pooling.ascore(c) for c in calls))
        return [list(got[:4]), list(got[4:])], list(got_every)

    got, got_every = asyncio.run(together())
    assert got == expected and got_every == every
    assert all(s.value is not None and s.dropped == 0 for c in got[0] for s in c)
    assert len({s.value for c in got[0] for s in c}) > 1  # the scores differ from input to input
    assert srv.max_in_flight == 8


def test_a_cancelled_call_leaves_the_loop_and_other_calls_alone(serve):
    stuck = threading.Event()

    def hanging(req):
        if req.path == "/v1/completions":
            stuck.wait(30)
        return FakeVLLM(model="m", gen=gen)(req)

    slow, fast = serve(hanging), serve(FakeVLLM(model="m", gen=gen))
    e_slow, e_fast = (OpenAICompatibleEngine(s.url, http=HTTP) for s in (slow, fast))

    async def run():
        task = asyncio.create_task(e_slow.agenerate([StepRequest("p")]))
        while not slow.on("/v1/completions"):  # its request reached the server
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await e_fast.agenerate([StepRequest("q")])

    try:
        out = asyncio.run(run())
    finally:
        stuck.set()
    assert out == e_fast.generate([StepRequest("q")])
    assert len(slow.on("/v1/completions")) == 1  # cancelled, not retried


def test_run_sync_runs_one_coroutine_from_sync_code_and_from_inside_a_loop(serve):
    srv = serve(FakeVLLM(model="m", gen=gen))
    eng = OpenAICompatibleEngine(srv.url, http=HTTP)
    want = eng.generate([StepRequest("p")])
    assert run_sync(eng.agenerate([StepRequest("p")])) == want

    async def notebook_cell():  # a running loop in this thread: the coroutine runs on a helper loop
        return run_sync(eng.agenerate([StepRequest("p")]))

    assert asyncio.run(notebook_cell()) == want
