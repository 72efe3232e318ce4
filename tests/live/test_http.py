"""JSONClient / OpenAICompatibleEngine against a real local HTTP server (no mocks of httpx)."""

from __future__ import annotations

import re
import socket
import time

import pytest
from _stub_server import models, not_found, serve_fixture

from trim_rl.live.engines import OpenAICompatibleEngine, Sampling, StepRequest, StepResult
from trim_rl.live.http import EngineError, HTTPSettings, JSONClient
from trim_rl.live.prompts import DEFAULT_SYSTEM, ChatTemplate, step_prompt

FAST = HTTPSettings(timeout=5.0, retries=3, backoff=0.01, concurrency=8)


@pytest.fixture
def serve():
    yield from serve_fixture()


def completion(text: str, finish_reason: str | None = "stop", tokens: int = 7, **extra) -> dict:
    """An OpenAI legacy ``/v1/completions`` answer."""
    return {"id": "cmpl-1", "object": "text_completion", "model": "stub-model",
            "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None, **extra}],
            "usage": {"prompt_tokens": 11, "completion_tokens": tokens, "total_tokens": 11 + tokens}}


def _problem_index(payload: dict) -> int:
    return int(re.search(r"problem-(\d+)", payload["prompt"]).group(1))


# ---------------------------------------------------------------------------------------------
# (a) answers, finish reasons, payloads, order under concurrency
# ---------------------------------------------------------------------------------------------
# (choice sent by the server, expected StepResult)
CASES = [
    (completion("\n\nStep 1: 2 + 2 = 4.\n\n", "length", tokens=64), StepResult("Step 1: 2 + 2 = 4.", 64, "length")),
    (completion("cut here", "length", tokens=5, stop_reason=None), StepResult("cut here", 5, "length")),
    (completion("x = 3.  \n", "stop", tokens=4, stop_reason="\n\n"), StepResult("x = 3.", 4, "stop")),
    (completion("So the answer is \\boxed{3}.", "stop", tokens=9, stop_reason=None),
     StepResult("So the answer is \\boxed{3}.", 9, "eos")),
    (completion("", "stop", tokens=1), StepResult("", 1, "eos")),
    (completion("\n \n", "stop", tokens=2), StepResult("", 2, "eos")),
    (completion("Then y = 2.", "stop", tokens=6), StepResult("Then y = 2.", 6, "stop")),
]


def test_generate_parses_answers_and_maps_finish_reasons(serve):
    def handler(req):
        if req.path == "/v1/models":
            return models("served-model")
        if req.path == "/v1/completions":
            return CASES[_problem_index(req.payload)][0]
        return not_found(req)

    srv = serve(handler)
    eng = OpenAICompatibleEngine(srv.url, http=FAST)
    assert eng.model == eng.name == "served-model"  # read from /v1/models
    out = eng.generate([StepRequest(f"problem-{i}") for i in range(len(CASES))])
    assert out == [expected for _, expected in CASES]
    assert len(srv.on("/v1/models")) == 1
    assert len(srv.on("/v1/completions")) == len(CASES)


def test_payload_holds_chat_prompt_sampling_and_seed(serve):
    srv = serve(lambda req: completion("ok") if req.path == "/v1/completions" else not_found(req))
    sampling = Sampling(max_tokens=77, temperature=0.7, top_p=0.9)
    eng = OpenAICompatibleEngine(srv.url + "/", model="m1", sampling=sampling, http=FAST)
    steps = ("First, 3 + 4 = 7.", "Then 7 * 2 = 14.")
    eng.generate([StepRequest("What is (3 + 4) * 2?", steps, seed=1234)])
    eng.generate([StepRequest("What is 1 + 1?")])
    assert [r.path for r in srv.requests] == ["/v1/completions"] * 2  # model given: no /v1/models
    with_seed, without_seed = (r.payload for r in srv.requests)

    expected_prompt = step_prompt(ChatTemplate.resolve("chatml"), "What is (3 + 4) * 2?", steps, DEFAULT_SYSTEM)
    assert with_seed["prompt"] == expected_prompt
    assert with_seed["prompt"].startswith("<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n")
    assert with_seed["prompt"].endswith(
        "<|im_start|>assistant\nFirst, 3 + 4 = 7.\n\nThen 7 * 2 = 14.\n\n")
    assert with_seed["model"] == "m1"
    assert with_seed["stop"] == ["\n\n"]
    assert with_seed["max_tokens"] == 77
    assert with_seed["temperature"] == 0.7
    assert with_seed["top_p"] == 0.9
    assert with_seed["seed"] == 1234
    assert "seed" not in without_seed
    assert without_seed["prompt"].endswith("What is 1 + 1?<|im_end|>\n<|im_start|>assistant\n")


def test_api_key_sent_as_bearer_token(serve):
    srv = serve(lambda req: models("k") if req.path == "/v1/models" else completion("a"))
    eng = OpenAICompatibleEngine(srv.url, http=FAST, api_key="sk-test")
    eng.generate([StepRequest("p")])
    assert len(srv.requests) == 2
    assert all(r.headers.get("Authorization") == "Bearer sk-test" for r in srv.requests)


def test_answers_in_request_order_when_earlier_requests_are_slower(serve):
    n = 6

    def handler(req):
        i = _problem_index(req.payload)
        time.sleep(0.06 * (n - i))  # the first request is answered last
        return completion(f"answer {i}", tokens=i + 1)

    srv = serve(handler)
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=0, concurrency=n))
    t0 = time.perf_counter()
    out = eng.generate([StepRequest(f"problem-{i}") for i in range(n)])
    elapsed = time.perf_counter() - t0
    assert [r.text for r in out] == [f"answer {i}" for i in range(n)]
    assert [r.tokens for r in out] == list(range(1, n + 1))
    # the requests really ran at once: the server answered them in reverse order, and the batch took
    # about the slowest request, not the sum of all (0.06 * 21 = 1.26 s)
    assert srv.max_in_flight >= 2
    finished = [_problem_index(srv.requests[j].payload) for j in srv.finished]
    assert finished[0] > finished[-1]
    assert elapsed < 1.0


def test_concurrency_setting_bounds_requests_in_flight(serve):
    def handler(req):
        time.sleep(0.05)
        return completion("x")

    srv = serve(handler)
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=0, concurrency=2))
    out = eng.generate([StepRequest(f"problem-{i}") for i in range(6)])
    assert len(out) == 6
    assert srv.max_in_flight == 2


def test_empty_batch_sends_nothing(serve):
    srv = serve(lambda req: completion("x"))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=FAST)
    assert eng.generate([]) == []
    assert srv.requests == []


def test_model_id_of_a_server_listing_no_model(serve):
    srv = serve(lambda req: {"object": "list", "data": []})
    with pytest.raises(EngineError, match="lists no model") as ei:
        OpenAICompatibleEngine(srv.url, http=FAST)
    assert ei.value.url == srv.url + "/v1/models"


def test_unexpected_answers_raise_engine_error(serve):
    answers = iter([{"choices": []}, "this is not json"])
    srv = serve(lambda req: next(answers))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=FAST)
    with pytest.raises(EngineError, match="unexpected answer"):
        eng.generate([StepRequest("p")])
    with pytest.raises(EngineError, match="not JSON"):
        eng.generate([StepRequest("p")])
    assert len(srv.requests) == 2  # neither is retried


# ---------------------------------------------------------------------------------------------
# (b) retries on 5xx / 429
# ---------------------------------------------------------------------------------------------
def _failing_first(n_failures: int, status: int):
    def handler(req):
        if req.index < n_failures:
            return status, {"error": {"message": "server busy"}}
        return completion("recovered", tokens=3)

    return handler


@pytest.mark.parametrize("status", [503, 429])
def test_retries_transient_errors_then_succeeds(serve, status):
    srv = serve(_failing_first(2, status))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=2, backoff=0.01))
    assert eng.generate([StepRequest("p")]) == [StepResult("recovered", 3, "stop")]
    assert len(srv.requests) == 3
    assert srv.requests[0].payload == srv.requests[2].payload  # the same request again


def test_gives_up_after_retries_and_names_the_url(serve):
    srv = serve(_failing_first(2, 503))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=1, backoff=0.01))
    with pytest.raises(EngineError) as ei:
        eng.generate([StepRequest("p")])
    assert len(srv.requests) == 2
    assert srv.url + "/v1/completions" in str(ei.value)
    assert ei.value.url == srv.url + "/v1/completions"
    assert "503" in str(ei.value) and "server busy" in str(ei.value)


def test_backoff_grows_between_attempts(serve):
    srv = serve(_failing_first(3, 500))
    client = JSONClient(srv.url, HTTPSettings(timeout=5, retries=3, backoff=0.1))
    assert client.post("/v1/completions", {"x": 1})["choices"][0]["text"] == "recovered"
    gaps = [b.t_start - a.t_start for a, b in zip(srv.requests, srv.requests[1:])]
    assert len(gaps) == 3
    # 0.1, 0.2, 0.4 s between the attempts
    for gap, expected in zip(gaps, (0.1, 0.2, 0.4)):
        assert expected * 0.9 <= gap < expected + 0.25


# ---------------------------------------------------------------------------------------------
# (c) client errors are not retried
# ---------------------------------------------------------------------------------------------
def test_http_400_raises_at_once(serve):
    srv = serve(lambda req: (400, {"error": {"message": "max_tokens is too large"}}))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=3, backoff=0.01))
    with pytest.raises(EngineError) as ei:
        eng.generate([StepRequest("p")])
    assert ei.value.status == 400
    assert len(srv.requests) == 1
    assert "max_tokens is too large" in str(ei.value)
    assert srv.url + "/v1/completions" in str(ei.value)


# ---------------------------------------------------------------------------------------------
# (d) nobody listening, (e) timeouts
# ---------------------------------------------------------------------------------------------
def _closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_closed_port_raises_after_retries_quickly():
    url = f"http://127.0.0.1:{_closed_port()}"
    eng = OpenAICompatibleEngine(url, model="m", http=HTTPSettings(timeout=2, retries=2, backoff=0.01))
    t0 = time.perf_counter()
    with pytest.raises(EngineError) as ei:
        eng.generate([StepRequest("p")])
    assert time.perf_counter() - t0 < 2.0
    assert ei.value.url == url + "/v1/completions"
    assert ei.value.status is None
    assert "3 attempts" in str(ei.value)


def test_closed_port_fails_when_asking_for_the_model():
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(EngineError) as ei:
        OpenAICompatibleEngine(url, http=HTTPSettings(timeout=2, retries=1, backoff=0.01))
    assert ei.value.url == url + "/v1/models"


def test_timeout_raises_engine_error(serve):
    def handler(req):
        srv.release.wait(3.0)  # woken at teardown
        return completion("too late")

    srv = serve(handler)
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=0.2, retries=0))
    t0 = time.perf_counter()
    with pytest.raises(EngineError) as ei:
        eng.generate([StepRequest("p")])
    assert time.perf_counter() - t0 < 1.5
    assert "Timeout" in str(ei.value)
    assert len(srv.requests) == 1


def test_timeout_is_retried(serve):
    def handler(req):
        if req.index == 0:
            srv.release.wait(3.0)
        return completion("second try")

    srv = serve(handler)
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=0.3, retries=1, backoff=0.01))
    assert eng.generate([StepRequest("p")])[0].text == "second try"
    assert len(srv.requests) == 2
