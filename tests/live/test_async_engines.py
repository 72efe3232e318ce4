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


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_run_sync_unwraps_an_interrupt_raised_inside_a_task_group(interrupt):
    # a signal handler fires wherever the loop is: inside anyio's task group (httpx's connect) the
    # interrupt reaches run_until_complete wrapped in an exception group, which no `except
    # KeyboardInterrupt` catches
    import anyio

    async def stuck():
        await anyio.sleep(30)

    async def connecting():
        async with anyio.create_task_group() as tg:
            tg.start_soon(stuck)
            await anyio.sleep(0)
            raise interrupt()

    with pytest.raises(interrupt):
        run_sync(connecting())


# ---------------------------------------------------------------------------------------------
# the in-process engine and PRM: vllm.LLM blocks, so their async methods run it in a worker thread,
# one call at a time (a stand-in for vllm.LLM here; the real one runs in test_vllm_inprocess.py)
# ---------------------------------------------------------------------------------------------
class _FakeLLM:
    """What VLLMEngine and VLLMInProcessPRM use of ``vllm.LLM``; counts the threads inside it at once."""

    def __init__(self, model: str, **kwargs):
        from types import SimpleNamespace

        self.model, self.inside, self.most_inside, self.calls = model, 0, 0, 0
        self.lock = threading.Lock()
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=4096))

    def get_tokenizer(self):
        return self

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        from trim_rl.live.prm import STEP_TAG_ID

        ids: list[int] = []
        for i, part in enumerate(text.split(STEP_TAG)):
            ids += ([STEP_TAG_ID] if i else []) + [_h(part[j : j + 4]) % 1000 for j in range(0, len(part), 4)]
        return ids

    def _enter(self) -> None:
        import time

        with self.lock:
            self.inside += 1
            self.calls += 1
            self.most_inside = max(self.most_inside, self.inside)
        time.sleep(0.02)  # long enough for another thread to come in, were it let in
        with self.lock:
            self.inside -= 1

    def generate(self, prompts, params, use_tqdm=False):
        from types import SimpleNamespace

        self._enter()
        out = []
        for p, sp in zip(prompts, params):
            text = f"Step {_h(repr(p['prompt_token_ids'])) % 997} (seed {sp.seed})."
            out.append(SimpleNamespace(outputs=[SimpleNamespace(text=text, finish_reason="stop", stop_reason="\n\n",
                                                                token_ids=list(range(len(text) // 4)))]))
        return out

    def reward(self, prompts, use_tqdm=False):
        from types import SimpleNamespace

        self._enter()
        out = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            rows = [[1 - (_h(repr(ids[: i + 1])) % 100) / 100, (_h(repr(ids[: i + 1])) % 100) / 100] for i in range(len(ids))]
            out.append(SimpleNamespace(outputs=SimpleNamespace(data=SimpleNamespace(tolist=lambda rows=rows: rows)),
                                       prompt_token_ids=ids))
        return out


@pytest.fixture
def fake_vllm(monkeypatch):
    import sys
    from types import ModuleType

    mod = ModuleType("vllm")
    mod.LLM = _FakeLLM

    class SamplingParams:
        def __init__(self, seed=None, **fields):
            self.seed, self.fields = seed, fields

    mod.SamplingParams = SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def test_in_process_engine_and_prm_awaited_at_once_run_one_call_at_a_time(fake_vllm):
    from trim_rl.live.engines import VLLMEngine
    from trim_rl.live.prm import VLLMInProcessPRM

    eng, prm_ = VLLMEngine("weak", Sampling(temperature=0.7)), VLLMInProcessPRM("prm")
    calls = [[StepRequest(f"problem {i}", ("First step.",) * j, seed=10 * i + j) for j in range(2)] for i in range(4)]
    items = [[(f"problem {i}", [f"step {k} of {i}" for k in range(j + 1)]) for j in range(3)] for i in range(4)]
    sequential = [eng.generate(c) for c in calls]
    scored = [prm_.score_last_detail(c) for c in items]

    async def together():
        return await asyncio.gather(asyncio.gather(*(eng.agenerate(c) for c in calls)),
                                    asyncio.gather(*(prm_.ascore_last_detail(c) for c in items)))

    got, got_scores = asyncio.run(together())
    assert list(got) == sequential and list(got_scores) == scored
    assert len({r.text for c in got for r in c}) == 8 and len({s.value for c in got_scores for s in c}) > 1
    for llm in (eng.llm, prm_.llm):  # every call went in, never two at once
        assert llm.calls == 8 and llm.most_inside == 1
