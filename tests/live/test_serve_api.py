"""The step-routing server's API through OpenAI's own client, in front of backends that answer as vLLM
does: responses, usage and traces that agree, streams, errors naming the field, faults of a backend
failing only the requests that needed it, the queue, timeouts and clients that leave."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from _serve import ServeProcess, ThreadServer, metric, metrics, serve_args, stub_backends
from _stub_server import serve_fixture

from tests.live.conftest import REPO

AGG = REPO / "checkpoints" / "trim_agg" / "trim_agg_b20"
BUDGET = REPO / "checkpoints" / "trim_agg_budget"
PROBLEM = "What is 2 + 2?"


@pytest.fixture
def serve():
    yield from serve_fixture()


@pytest.fixture(scope="module")
def backends():
    starts = serve_fixture()
    yield stub_backends(next(starts))
    next(starts, None)


@pytest.fixture(scope="module")
def server(backends):
    """One server for the tests that change nothing in it (they count what they caused themselves)."""
    with ThreadServer(serve_args(*backends, "--policy", "thr=thr:0.5", "--policy", f"budget={BUDGET}",
                                 "--policy", "weak-only", "--policy", "strong-only")) as srv:
        yield srv


def ask(client, model="thr", problem=PROBLEM, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": problem}], **kw)


def trim(**options) -> dict:
    return {"extra_body": {"trim": options}}


def test_models_health_and_a_routed_answer_whose_usage_and_trace_agree(server, backends):
    client = server.client()
    assert [m.id for m in client.models.list()] == ["thr", "budget", "weak-only", "strong-only"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    calls = [len(b.on("/v1/completions")) for b in backends[:2]]
    r = ask(client, **trim(return_steps=True))
    choice = r.choices[0]
    steps = choice.model_extra["trim"]["steps"]
    # the stub PRM scores step 2 at 0.2: thr:0.5 regenerates it, and keeps steps 1 and 3
    assert [s["by"] for s in steps] == ["weak", "strong", "weak"]
    assert [s["decision"] for s in steps] == ["keep", "regenerate", "keep"]
    assert steps[1]["draft"]["score"] == pytest.approx(0.2, abs=1e-6)
    assert choice.message.content == "\n\n".join(s["text"] for s in steps)
    assert choice.finish_reason == "stop" and choice.model_extra["trim"]["finish"] == "answer"
    u = r.usage
    assert r.model == "thr" and r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert u.strong_tokens == sum(s["tokens"] for s in steps if s["by"] == "strong")
    assert u.discarded_tokens == sum(s["draft"]["tokens"] for s in steps if "draft" in s)
    assert u.weak_tokens == sum(s["tokens"] for s in steps if s["by"] == "weak") + u.discarded_tokens
    assert u.completion_tokens == sum(s["tokens"] for s in steps) == u.total_tokens - u.prompt_tokens
    assert u.prompt_tokens > 0 and u.interventions == 1 and u.steps == 3
    # every draft was scored, and the strong step too (with the next draft): 3 + 1 scorer inputs
    assert u.prm_calls == 4 and steps[1]["score"] == pytest.approx(0.9, abs=1e-6)
    # one batched weak call per round: three rounds, and one strong call for the regeneration
    assert [len(b.on("/v1/completions")) - n for b, n in zip(backends, calls)] == [3, 1]


def test_fixed_modes_and_the_price_rule(server):
    client = server.client()
    weak = ask(client, "weak-only").usage
    assert weak.strong_tokens == 0 and weak.prm_calls == 0 and weak.steps == 3
    strong = ask(client, "strong-only").usage
    assert strong.weak_tokens == 0 and strong.strong_tokens == strong.completion_tokens > 0
    # a price at which one strong token costs a correct answer: nothing is worth regenerating
    r = ask(client, "budget", **trim(lam=1.0, return_steps=True))
    steps = r.choices[0].model_extra["trim"]["steps"]
    assert r.usage.strong_tokens == 0 and {s.get("blocked") for s in steps} == {"price"}
    cheap = ask(client, "budget", **trim(lam=4e-4, return_steps=True))
    assert cheap.choices[0].model_extra["trim"]["lam"] == 4e-4


def test_the_request_s_system_message_reaches_both_models(server, backends):
    client = server.client()
    problem = "What is 17 + 25?"
    client.chat.completions.create(model="thr", messages=[{"role": "system", "content": "Answer like a pirate."},
                                                          {"role": "user", "content": "Earlier question"},
                                                          {"role": "assistant", "content": "Earlier answer"},
                                                          {"role": "user", "content": problem}])
    weak, strong, _ = backends
    for b in (weak, strong):
        prompts = [p for p in b.handler.prompts if problem in p]
        assert prompts and all("Answer like a pirate." in p and "Earlier" not in p for p in prompts)


def test_max_strong_tokens_and_max_steps(server):
    client = server.client()
    r = ask(client, **trim(max_strong_tokens=0, return_steps=True))
    steps = r.choices[0].model_extra["trim"]["steps"]
    assert r.usage.strong_tokens == 0 and steps[1]["blocked"] == "max_strong_tokens"
    r = ask(client, **trim(max_steps=1))
    assert r.usage.steps == 1 and r.choices[0].finish_reason == "length"


def test_stream_step_by_step_with_usage_last(server):
    client = server.client()
    plain = ask(client, seed=1, **trim(return_steps=True))
    chunks = list(ask(client, seed=1, stream=True, stream_options={"include_usage": True}, **trim(return_steps=True)))
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) == 3  # one chunk per accepted step
    assert "".join(texts) == plain.choices[0].message.content
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    assert finish[0].choices[0].model_extra["trim"]["steps"] == plain.choices[0].model_extra["trim"]["steps"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    # without include_usage: no usage chunk; the raw stream ends with [DONE]
    raw = httpx.post(server.url + "/v1/chat/completions", json={"model": "thr", "stream": True, "messages": [
        {"role": "user", "content": PROBLEM}]}).text
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)
    assert all("usage" not in json.loads(e[6:]) for e in events[:-1])


def test_completions_one_choice_per_prompt(server):
    client = server.client()
    r = client.completions.create(model="thr", prompt=["What is 1 + 1?", "What is 2 + 2?", "What is 3 + 3?"])
    assert [c.index for c in r.choices] == [0, 1, 2] and r.object == "text_completion"
    assert all(c.text.endswith("\\boxed{4}.") and c.finish_reason == "stop" for c in r.choices)
    assert r.usage.steps == 9 and r.usage.interventions == 3
    chunks = list(client.completions.create(model="thr", prompt=PROBLEM, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == r.choices[1].text


BAD = [
    ({"trim": {"budget": -1}}, "trim.budget"),
    ({"trim": {"budget": "lots"}}, "trim.budget"),
    ({"trim": {"lam": 0}}, "trim.lam"),
    ({"trim": {"lam": 1e-3}}, "trim.lam"),  # thr:0.5 takes no price
    ({"trim": {"policy": "nope"}}, "trim.policy"),
    ({"trim": {"max_strong_tokens": -5}}, "trim.max_strong_tokens"),
    ({"trim": {"max_steps": 31}}, "trim.max_steps"),
    ({"trim": {"retrun_steps": True}}, "trim.retrun_steps"),
    ({"trim": {"policy": "budget"}}, "trim.budget"),  # budget-conditioned, and the server has no default price
    ({"trim": {"policy": "budget", "budget": 90}}, "trim.budget"),  # beyond the most its budget table spends
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "only a system message"}]}, "messages"),
    ({"max_tokens": 0}, "max_tokens"),
]


@pytest.mark.parametrize("change,param", BAD, ids=[p for _, p in BAD])
def test_bad_fields_are_400_naming_the_field(server, change, param):
    body = {"model": "thr", "messages": [{"role": "user", "content": PROBLEM}], **change}
    r = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"].startswith(param) and err["type"] == "invalid_request_error"


def test_the_openai_client_sees_bad_request_errors(server):
    before = metric(metrics(server.url), "trim_requests_total", status="400")
    with pytest.raises(openai.BadRequestError) as e:
        ask(server.client(), **trim(budget=101))
    assert e.value.body["param"] == "trim.budget"
    with pytest.raises(openai.BadRequestError) as e:
        server.client().completions.create(model="thr", prompt=["a", "b"], stream=True)
    assert e.value.body["param"] == "prompt"
    assert metric(metrics(server.url), "trim_requests_total", status="400") == before + 2


def test_a_failing_strong_backend_fails_only_the_requests_that_needed_it_and_recovers(serve):
    # the PRM is low at step 2 of problems holding "#regen": only those need the strong model
    weak, strong, prm = stub_backends(serve, where="#regen")
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5")) as srv:
        client = srv.client()
        for mode, status, code in (("garbage", 502, "backend_error"), ("refuse", 502, "backend_error")):
            strong.handler.mode = mode
            out = {}

            def one(name, problem, out=out):
                try:
                    out[name] = ask(client, "thr:0.5", problem).usage
                except openai.APIStatusError as exc:
                    out[name] = exc

            threads = [threading.Thread(target=one, args=(f"{kind}{i}", f"{PROBLEM} #{kind} {i}"))
                       for i in range(3) for kind in ("regen", "keep")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for name, got in out.items():
                if name.startswith("regen"):
                    assert isinstance(got, openai.APIStatusError) and got.status_code == status, got
                    # the role and what it answered, never the backend's address
                    assert got.body["code"] == code and "the strong backend failed" in got.body["message"]
                    assert ("HTTP 503" in got.body["message"]) == (mode == "refuse")
                    assert "127.0.0.1" not in got.body["message"] and strong.url.rsplit(":", 1)[1] not in got.body["message"]
                else:
                    assert got.strong_tokens == 0 and got.steps == 3
            strong.handler.mode = "ok"  # the backend is back: the next request regenerates again
            assert ask(client, "thr:0.5", f"{PROBLEM} #regen").usage.interventions == 1
        m = metrics(srv.url)
        assert metric(m, "trim_backend_errors_total", backend="strong") >= 2
        assert metric(m, "trim_requests_total", status="502") == 6
        assert metric(m, "trim_requests_total", status="200") == 8


def test_a_backend_that_times_out_is_504_naming_it(serve):
    weak, strong, prm = stub_backends(serve)
    prm.handler.mode, prm.handler.hang_s = "hang", 3.0
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--timeout", "0.5",
                                 "--retries", "0")) as srv:
        with pytest.raises(openai.APIStatusError) as e:
            ask(srv.client(), "thr:0.5")
        assert e.value.status_code == 504 and e.value.body["code"] == "backend_timeout"
        assert e.value.body["message"] == "the scorer backend timed out"
        prm.handler.mode = "ok"
        assert ask(srv.client(), "thr:0.5").usage.steps == 3


def test_a_stream_that_fails_after_its_first_step_ends_with_an_error_event(serve):
    weak, strong, prm = stub_backends(serve)
    strong.handler.mode = "garbage"
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5")) as srv:
        got = []
        with pytest.raises(openai.APIError) as e:
            for c in ask(srv.client(), "thr:0.5", stream=True):
                got.append(c)
        assert "strong backend failed" in str(e.value)
        assert [c.choices[0].delta.content for c in got][1].startswith("Step 1:")  # step 1 was streamed
        assert metric(metrics(srv.url), "trim_requests_total", status="502") == 1


def test_full_queue_is_429_with_retry_after_and_timeouts_are_504(serve):
    weak, strong, prm = stub_backends(serve, delay=0.3)
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--max-active", 1, "--max-queue", 1,
                                 "--request-timeout", 30)) as srv:
        statuses, headers = [], []

        def one():
            r = httpx.post(srv.url + "/v1/chat/completions", timeout=60,
                           json={"model": "thr:0.5", "messages": [{"role": "user", "content": PROBLEM}]})
            statuses.append(r.status_code)
            headers.append(r.headers.get("retry-after"))

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.1)
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 200, 429]
        assert int(headers[statuses.index(429)]) >= 1
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "thr:0.5", "--request-timeout", 0.5)) as srv:
        with pytest.raises(openai.APIStatusError) as e:
            ask(srv.client(), "thr:0.5")
        assert e.value.status_code == 504 and e.value.body["code"] == "request_timeout"


def test_a_client_that_leaves_frees_its_slot(serve):
    weak, strong, prm = stub_backends(serve, n_steps=30, delay=0.2)
    with ThreadServer(serve_args(weak, strong, prm, "--policy", "weak-only", "--max-active", 1)) as srv:
        body = {"model": "weak-only", "messages": [{"role": "user", "content": PROBLEM}]}
        for stream in (False, True):
            before = len(weak.on("/v1/completions"))
            if stream:  # read the first step, then hang up
                with httpx.stream("POST", srv.url + "/v1/chat/completions", json={**body, "stream": True}) as r:
                    next(r.iter_lines())
            else:  # give up waiting for the answer
                with pytest.raises(httpx.ReadTimeout):
                    httpx.post(srv.url + "/v1/chat/completions", timeout=0.7, json=body)
            time.sleep(0.6)  # the round in flight ends; the request is dropped
            m = metrics(srv.url)
            assert metric(m, "trim_requests_active") == 0
            left = len(weak.on("/v1/completions"))
            assert left - before < 30  # it did not run to its 30 steps
            time.sleep(0.5)
            assert len(weak.on("/v1/completions")) == left  # and nothing more was asked for it
        assert metric(metrics(srv.url), "trim_requests_total", status="499") == 2
        r = ask(srv.client(), "weak-only", **trim(max_steps=2))  # the only slot is free
        assert r.usage.steps == 2


def test_budget_control_moves_the_price_towards_the_target(serve, tmp_path):
    # every step scores 0.2: the budget-conditioned policy regenerates a lot at a low price
    weak, strong, prm = stub_backends(serve, n_steps=3, low_step=1)
    prm.handler.fake.prm = lambda prompt: [0.2] * prompt.count("<extra_0>")
    with ThreadServer(serve_args(weak, strong, prm, "--policy", f"budget={BUDGET}", "--target-strong-share", 0.05,
                                 "--price-window", 4, "--price-rate", 0.5)) as srv:
        client = srv.client()
        p0 = metric(metrics(srv.url), "trim_price", policy="budget")
        assert metric(metrics(srv.url), "trim_target_strong_share") == 0.05
        shares = []
        for i in range(6):
            u = ask(client, "budget", f"{PROBLEM} {i}").usage
            shares.append(u.strong_tokens / u.completion_tokens)
        p1 = metric(metrics(srv.url), "trim_price", policy="budget")
        assert max(shares) > 0.05 and p1 > p0  # spent above the target: the price rose
        own = ask(client, "budget", **trim(lam=4e-4))  # a request's own price is its own
        assert own.choices[0].model_extra["trim"]["lam"] == 4e-4
        assert metric(metrics(srv.url), "trim_price", policy="budget") == p1


def test_sigterm_drains_the_requests_in_flight(serve, tmp_path):
    weak, strong, prm = stub_backends(serve, delay=0.3)
    proc = ServeProcess(serve_args(weak, strong, prm, "--policy", "thr:0.5"), tmp_path / "serve.log")
    results = []

    def one(i):
        try:
            results.append(ask(proc.client(), "thr:0.5", f"{PROBLEM} {i}").usage.steps)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            results.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the server holds all four
        h = httpx.get(proc.url + "/health").json()
        if h["active"] + h["queued"] == 4:
            break
        time.sleep(0.05)
    rc = proc.stop()  # SIGTERM while all four are in flight
    for t in threads:
        t.join()
    assert rc == 0, proc.log.read_text()
    assert results == [3, 3, 3, 3]
    assert "stopped" in proc.log.read_text() and "Traceback" not in proc.log.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(proc.url + "/health")
