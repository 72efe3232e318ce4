"""JSONClient / OpenAICompatibleEngine against real local HTTP servers (no mocks of httpx).

Servers that imitate ``vllm serve`` answer as :mod:`_vllm` documents (the vLLM sources read), and
those that imitate llama.cpp's ``llama-server`` as :mod:`_llama_server` documents."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest
from _stub_server import Trickle, models, not_found, serve_fixture
from _llama_server import CONTEXT_ERROR, FakeLlamaServer
from _llama_server import n_tokens as llama_tokens
from _vllm import FakeVLLM, context_error

from trim_rl.live.engines import OpenAICompatibleEngine, Sampling, StepRequest, StepResult
from trim_rl.live.http import EngineError, HTTPSettings, JSONClient
from trim_rl.live.prompts import DEFAULT_SYSTEM, ChatTemplate, step_prompt

FAST = HTTPSettings(timeout=5.0, retries=3, backoff=0.01, concurrency=8)


@pytest.fixture
def serve():
    yield from serve_fixture()


def routed(handler, model_id: str = "m"):
    """``handler`` behind a ``/v1/models`` that lists ``model_id`` (the engines ask it at start-up)."""
    return lambda req: models(model_id) if req.path == "/v1/models" else handler(req)


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
    # vLLM adds generation_config.json's EOS ids (Qwen2.5: <|im_end|> 151645) to the stop token ids and
    # reports the one that matched as an integer stop_reason: the model ended its answer
    (completion("The answer is 12.", "stop", tokens=6, stop_reason=151645), StepResult("The answer is 12.", 6, "eos")),
    # vLLM's repetition detection cut a looping step: not an end of the solution
    (completion("1 1 1 1 1", "repetition", tokens=60, stop_reason=None), StepResult("1 1 1 1 1", 60, "repetition")),
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
    assert not out[5].ends_solution and out[4].ends_solution
    assert len(srv.on("/v1/models")) == 1
    assert len(srv.on("/v1/completions")) == len(CASES)


def test_unknown_finish_reason_is_a_server_error(serve):
    srv = serve(routed(lambda req: completion("x", "weird")))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=FAST)
    with pytest.raises(EngineError, match="finish_reason = 'weird'") as ei:
        eng.generate([StepRequest("p")])
    assert srv.url in str(ei.value)


def test_payload_sends_every_sampling_field_and_no_special_tokens(serve):
    """vLLM fills every sampling field not sent from the model's generation_config.json
    (``vllm/config/model.py`` ``get_diff_sampling_param``, merged in ``CompletionRequest.to_sampling_params``),
    and adds a BOS unless ``add_special_tokens`` is false; the engine sends them all."""
    srv = serve(routed(lambda req: completion("ok") if req.path == "/v1/completions" else not_found(req), "m1"))
    sampling = Sampling(max_tokens=77, temperature=0.7, top_p=0.9, top_k=20, min_p=0.05, repetition_penalty=1.1)
    eng = OpenAICompatibleEngine(srv.url + "/", model="m1", sampling=sampling, http=FAST)
    steps = ("First, 3 + 4 = 7.", "Then 7 * 2 = 14.")
    eng.generate([StepRequest("What is (3 + 4) * 2?", steps, seed=1234)])
    eng.generate([StepRequest("What is 1 + 1?")])
    assert [r.path for r in srv.requests] == ["/v1/models", "/v1/completions", "/v1/completions"]
    with_seed, without_seed = (r.payload for r in srv.on("/v1/completions"))

    expected_prompt = step_prompt(ChatTemplate.resolve("chatml"), "What is (3 + 4) * 2?", steps, DEFAULT_SYSTEM)
    assert with_seed["prompt"] == expected_prompt
    assert with_seed["prompt"].startswith("<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n")
    assert with_seed["prompt"].endswith(
        "<|im_start|>assistant\nFirst, 3 + 4 = 7.\n\nThen 7 * 2 = 14.\n\n")
    assert {k: with_seed[k] for k in ("model", "stop", "max_tokens", "temperature", "top_p", "top_k", "min_p",
                                      "repetition_penalty", "presence_penalty", "frequency_penalty", "seed",
                                      "add_special_tokens")} == \
        {"model": "m1", "stop": ["\n\n"], "max_tokens": 77, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
         "min_p": 0.05, "repetition_penalty": 1.1, "presence_penalty": 0.0, "frequency_penalty": 0.0, "seed": 1234,
         "add_special_tokens": False}
    assert with_seed["repeat_penalty"] == 1.1  # llama-cpp-python's name for it
    assert "seed" not in without_seed
    assert without_seed["prompt"].endswith("What is 1 + 1?<|im_end|>\n<|im_start|>assistant\n")


def test_default_sampling_switches_every_filter_off(serve):
    """top_k off is -1 for vLLM (0.8.5's ``SamplingParams._verify_args`` accepts only -1, 0.10 on quietly
    accept it) and 0 for llama-cpp-python (its request model wants top_k >= 0)."""
    other = serve(routed(lambda req: completion("ok")))
    vllm = serve(FakeVLLM(model="m", gen=lambda q, p: ("ok", "stop", "\n\n")))
    for srv, top_k in ((other, 0), (vllm, -1)):
        OpenAICompatibleEngine(srv.url, model="m", http=FAST).generate([StepRequest("p")])
        p = srv.on("/v1/completions")[0].payload
        assert (p["temperature"], p["top_p"], p["top_k"], p["min_p"], p["repetition_penalty"]) == (0.0, 1.0, top_k, 0.0, 1.0)


def test_llama31_template_has_its_system_header():
    t = ChatTemplate.resolve("llama3.1")
    prompt = step_prompt(t, "What is 2 + 2?", ("2 + 2 = 4.",), "Be brief.")
    assert prompt == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                      "December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user"
                      "<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
                      "2 + 2 = 4.\n\n")
    assert prompt.count("<|begin_of_text|>") == 1


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

    srv = serve(routed(handler))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=0, concurrency=n))
    t0 = time.perf_counter()
    out = eng.generate([StepRequest(f"problem-{i}") for i in range(n)])
    elapsed = time.perf_counter() - t0
    assert [r.text for r in out] == [f"answer {i}" for i in range(n)]
    assert [r.tokens for r in out] == list(range(1, n + 1))
    # the requests really ran at once: the server answered them in reverse order, and the batch took
    # about the slowest request, not the sum of all (0.06 * 21 = 1.26 s)
    assert srv.max_in_flight >= 2
    comp = [r for r in srv.requests if r.path == "/v1/completions"]
    finished = [_problem_index(srv.requests[j].payload) for j in srv.finished if srv.requests[j] in comp]
    assert finished[0] > finished[-1]
    assert elapsed < 1.0


def test_concurrency_setting_bounds_requests_in_flight(serve):
    def handler(req):
        time.sleep(0.05)
        return completion("x")

    srv = serve(routed(handler))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=0, concurrency=2))
    out = eng.generate([StepRequest(f"problem-{i}") for i in range(6)])
    assert len(out) == 6
    assert srv.max_in_flight == 2


def test_one_client_for_the_whole_run_reuses_its_connections(serve):
    """Three calls of four requests each: the engine's one client keeps its (at most four)
    connections open across calls; a client per call would open twelve."""
    srv = serve(routed(lambda req: completion("x")))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=0, concurrency=4))
    for _ in range(3):
        eng.generate([StepRequest(f"problem-{i}") for i in range(4)])
    ports = {r.client_port for r in srv.on("/v1/completions")}
    assert len(srv.on("/v1/completions")) == 12
    assert len(ports) <= 5  # the /v1/models connection may be one of them


def test_sync_calls_work_inside_a_running_event_loop(serve):
    """As in Jupyter: a sync generate() called from code that runs inside an event loop."""
    srv = serve(routed(lambda req: completion("inside")))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=FAST)

    async def notebook_cell():
        return eng.generate([StepRequest("p")])

    assert asyncio.run(notebook_cell())[0].text == "inside"


def test_empty_batch_sends_nothing(serve):
    srv = serve(routed(lambda req: completion("x")))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=FAST)
    assert eng.generate([]) == []
    assert srv.on("/v1/completions") == []


def test_model_id_of_a_server_listing_no_model(serve):
    srv = serve(lambda req: {"object": "list", "data": []})
    with pytest.raises(EngineError, match="lists no model") as ei:
        OpenAICompatibleEngine(srv.url, http=FAST)
    assert ei.value.url == srv.url + "/v1/models"


def test_a_model_the_server_does_not_serve_is_named(serve):
    srv = serve(lambda req: models("served"))
    with pytest.raises(EngineError, match="does not serve model 'other'.*'served'") as ei:
        OpenAICompatibleEngine(srv.url, model="other", http=FAST)
    assert ei.value.url == srv.url + "/v1/models"


def test_unexpected_answers_raise_engine_error(serve):
    answers = iter([{"choices": []}, "this is not json"])
    srv = serve(routed(lambda req: next(answers)))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=FAST)
    with pytest.raises(EngineError, match="unexpected answer"):
        eng.generate([StepRequest("p")])
    with pytest.raises(EngineError, match="not JSON"):
        eng.generate([StepRequest("p")])
    assert len(srv.on("/v1/completions")) == 2  # neither is retried


# ---------------------------------------------------------------------------------------------
# (b) numbers from the server are checked
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokens", [-5, 2.5, "7", None, 10**9])
def test_bad_completion_tokens_are_a_server_error_naming_server_and_field(serve, tokens):
    answer = completion("x = 1", tokens=0)
    answer["usage"]["completion_tokens"] = tokens
    srv = serve(routed(lambda req: answer))
    eng = OpenAICompatibleEngine(srv.url, model="m", sampling=Sampling(max_tokens=64), http=FAST)
    with pytest.raises(EngineError, match=r"usage\.completion_tokens = ") as ei:
        eng.generate([StepRequest("p")])
    assert ei.value.url == srv.url + "/v1/completions"


# ---------------------------------------------------------------------------------------------
# (c) finish_reason "abort", context length, several prompts per request (vLLM)
# ---------------------------------------------------------------------------------------------
def test_aborted_request_is_sent_again(serve):
    answers = iter([completion("", "abort", tokens=0), completion("done", "stop", tokens=2, stop_reason="\n\n")])
    srv = serve(routed(lambda req: next(answers)))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=FAST)
    assert eng.generate([StepRequest("p")]) == [StepResult("done", 2, "stop")]
    assert len(srv.on("/v1/completions")) == 2


def test_always_aborted_is_an_error_not_an_end_of_solution(serve):
    srv = serve(routed(lambda req: completion("", "abort", tokens=0)))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=2, backoff=0.01))
    with pytest.raises(EngineError, match="aborted"):
        eng.generate([StepRequest("p")])
    assert len(srv.on("/v1/completions")) == 3


def test_prompt_past_the_context_is_a_context_step_and_others_go_on(serve):
    vllm = FakeVLLM(model="m", max_model_len=200, gen=lambda prompt, p: ("next step", "stop", "\n\n"))
    srv = serve(vllm)
    eng = OpenAICompatibleEngine(srv.url, model="m", sampling=Sampling(max_tokens=16),
                                 http=HTTPSettings(timeout=5, retries=0, concurrency=4), prompts_per_request=1)
    long_steps = tuple(f"step {i} " + "x" * 40 for i in range(20))  # about 250 tokens
    out = eng.generate([StepRequest("short"), StepRequest("long", long_steps), StepRequest("short too")])
    assert out[1] == StepResult("", 0, "context")
    assert out[0] == out[2] == StepResult("next step", 3, "stop")


def test_greedy_prompts_go_several_per_request_to_vllm(serve):
    """vLLM's completions take a list of prompts; usage then sums them, so the engine asks for
    ``token_ids`` per choice."""
    vllm = FakeVLLM(model="m", gen=lambda prompt, p: ("answer to " + re.search(r"problem-(\d+)", prompt).group(1),
                                                      "stop", "\n\n"))
    srv = serve(vllm)
    eng = OpenAICompatibleEngine(srv.url, http=HTTPSettings(timeout=5, retries=0, concurrency=4))
    assert eng.prompts_per_request == 32  # owned_by "vllm"
    out = eng.generate([StepRequest(f"problem-{i}", seed=i) for i in range(40)])
    assert [r.text for r in out] == [f"answer to {i}" for i in range(40)]
    assert [r.tokens for r in out] == [len(f"answer to {i}") // 4 + (len(f"answer to {i}") % 4 > 0) for i in range(40)]
    reqs = srv.on("/v1/completions")
    assert [len(r.payload["prompt"]) for r in reqs] in ([32, 8], [8, 32])
    assert all(r.payload["return_token_ids"] and "seed" not in r.payload for r in reqs)


def test_sampled_prompts_go_one_per_request_with_their_own_seed(serve):
    srv = serve(FakeVLLM(model="m", gen=lambda prompt, p: ("s", "stop", "\n\n")))
    eng = OpenAICompatibleEngine(srv.url, sampling=Sampling(temperature=0.7), http=FAST)
    eng.generate([StepRequest(f"problem-{i}", seed=100 + i) for i in range(3)])
    assert sorted(r.payload["seed"] for r in srv.on("/v1/completions")) == [100, 101, 102]
    assert all(isinstance(r.payload["prompt"], str) for r in srv.on("/v1/completions"))


def _answer_to(prompt: str, p: dict) -> tuple[str, str]:
    return "answer to " + re.search(r"problem-(\d+)", prompt).group(1), "stop"


def test_several_prompts_per_request_to_llama_server_come_back_as_an_array(serve):
    """llama-server answers a request of several prompts with a JSON array of whole completion
    objects, each with its own usage: every step gets its own text and token counts."""
    fake = FakeLlamaServer(gen=_answer_to)
    srv = serve(fake)
    eng = OpenAICompatibleEngine(srv.url, http=FAST)
    assert eng.prompts_per_request == 1  # owned_by "llamacpp": one per request unless asked
    eng = OpenAICompatibleEngine(srv.url, http=FAST, prompts_per_request=4)
    reqs = [StepRequest(f"problem-{i}" + " words" * i) for i in range(10)]  # prompts of different lengths
    out = eng.generate(reqs)
    assert [r.text for r in out] == [f"answer to {i}" for i in range(10)]
    assert [r.tokens for r in out] == [llama_tokens(f"answer to {i}") for i in range(10)]
    prompts = [step_prompt(eng.template, r.problem, ()) for r in reqs]
    assert [r.prompt_tokens for r in out] == [llama_tokens(q) for q in prompts]
    assert sorted(fake.seen) == [2, 4, 4] and eng.batch_error is None


def test_a_prompt_past_llama_servers_context_fails_its_request_and_is_found_alone(serve):
    fake = FakeLlamaServer(n_ctx=200, gen=_answer_to)
    srv = serve(fake)
    eng = OpenAICompatibleEngine(srv.url, http=FAST, prompts_per_request=3)
    long_steps = tuple(f"step {i} " + "x" * 40 for i in range(20))  # about 250 tokens
    out = eng.generate([StepRequest("problem-0"), StepRequest("problem-1", long_steps), StepRequest("problem-2")])
    assert out[1] == StepResult("", 0, "context")
    assert [out[0].text, out[2].text] == ["answer to 0", "answer to 2"]
    assert fake.seen == [3, 1, 1, 1]  # the whole request failed; each prompt asked alone


def test_llama_server_context_error_is_recognised():
    from trim_rl.live.http import is_context_error

    assert is_context_error(400, str({"error": {"code": 400, "message": CONTEXT_ERROR, "type": "invalid_request_error"}}))
    # later llama.cpp versions name the error type
    assert is_context_error(400, '{"error": {"code": 400, "message": "request (5000 tokens) exceeds the available '
                                 'context size (4096 tokens), try increasing it", "type": "exceed_context_size_error"}}')
    assert not is_context_error(500, CONTEXT_ERROR)


def test_unreadable_answer_to_several_prompts_is_asked_again_one_per_request(serve):
    """A server that answers a list of prompts with one choice only (it read the first prompt alone):
    those prompts are asked again one per request, and so is every later call."""
    def handler(req):
        prompts = req.payload["prompt"]
        first = prompts[0] if isinstance(prompts, list) else prompts
        return completion(_answer_to(first, req.payload)[0], "stop", tokens=3)

    srv = serve(routed(handler))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=FAST, prompts_per_request=4)
    out = eng.generate([StepRequest(f"problem-{i}") for i in range(4)])
    assert [r.text for r in out] == [f"answer to {i}" for i in range(4)]
    assert eng.prompts_per_request == 1 and "4 choices expected" in eng.batch_error
    sizes = [len(r.payload["prompt"]) if isinstance(r.payload["prompt"], list) else 1 for r in srv.on("/v1/completions")]
    assert sizes == [4, 1, 1, 1, 1]
    eng.generate([StepRequest(f"problem-{i}") for i in range(4, 8)])
    assert all(isinstance(r.payload["prompt"], str) for r in srv.on("/v1/completions")[5:])
    assert len(srv.on("/v1/completions")) == 9


def test_an_unreadable_answer_to_one_prompt_is_still_an_error(serve):
    srv = serve(routed(lambda req: [completion("a"), completion("b")]))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=FAST)
    with pytest.raises(EngineError, match="unexpected answer"):
        eng.generate([StepRequest("p")])


# ---------------------------------------------------------------------------------------------
# (d) retries on 5xx / 429
# ---------------------------------------------------------------------------------------------
def _failing_first(n_failures: int, status: int):
    count = {"n": 0}

    def handler(req):
        count["n"] += 1
        if count["n"] <= n_failures:
            return status, {"error": {"message": "server busy"}}
        return completion("recovered", tokens=3)

    return routed(handler)


@pytest.mark.parametrize("status", [503, 429])
def test_retries_transient_errors_then_succeeds(serve, status):
    srv = serve(_failing_first(2, status))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=2, backoff=0.01))
    assert eng.generate([StepRequest("p")]) == [StepResult("recovered", 3, "stop")]
    comp = srv.on("/v1/completions")
    assert len(comp) == 3
    assert comp[0].payload == comp[2].payload  # the same request again


def test_gives_up_after_retries_and_names_the_url(serve):
    srv = serve(_failing_first(2, 503))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=1, backoff=0.01))
    with pytest.raises(EngineError) as ei:
        eng.generate([StepRequest("p")])
    assert len(srv.on("/v1/completions")) == 2
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
# (e) client errors are not retried
# ---------------------------------------------------------------------------------------------
def test_http_400_raises_at_once(serve):
    srv = serve(routed(lambda req: (400, {"error": {"message": "max_tokens is too large"}})))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=5, retries=3, backoff=0.01))
    with pytest.raises(EngineError) as ei:
        eng.generate([StepRequest("p")])
    assert ei.value.status == 400
    assert len(srv.on("/v1/completions")) == 1
    assert "max_tokens is too large" in str(ei.value)
    assert srv.url + "/v1/completions" in str(ei.value)


# ---------------------------------------------------------------------------------------------
# (f) nobody listening, timeouts
# ---------------------------------------------------------------------------------------------
def _closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_closed_port_fails_when_asking_for_the_model():
    url = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    with pytest.raises(EngineError) as ei:
        OpenAICompatibleEngine(url, http=HTTPSettings(timeout=2, retries=2, backoff=0.01))
    assert time.perf_counter() - t0 < 2.0
    assert ei.value.url == url + "/v1/models"
    assert ei.value.status is None
    assert "3 attempts" in str(ei.value)


def test_timeout_raises_engine_error(serve):
    def handler(req):
        srv.release.wait(3.0)  # woken at teardown
        return completion("too late")

    srv = serve(routed(handler))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=0.2, retries=0))
    t0 = time.perf_counter()
    with pytest.raises(EngineError) as ei:
        eng.generate([StepRequest("p")])
    assert time.perf_counter() - t0 < 1.5
    assert "Timeout" in str(ei.value)
    assert len(srv.on("/v1/completions")) == 1


def test_timeout_bounds_the_whole_request_of_a_trickling_server(serve):
    """The server sends its answer one byte every 0.2 s (each read well inside the timeout): the
    0.5 s timeout bounds each attempt as a whole, so two attempts fail in about 1 s."""
    srv = serve(routed(lambda req: Trickle(completion("slow"), 0.2)))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=0.5, retries=1, backoff=0.01))
    t0 = time.perf_counter()
    with pytest.raises(EngineError, match="2 attempts.*no complete answer within 0.5 s"):
        eng.generate([StepRequest("p")])
    assert time.perf_counter() - t0 < 2.5
    assert len(srv.on("/v1/completions")) == 2


def test_timeout_is_retried(serve):
    def handler(req):
        if len(srv.on("/v1/completions")) == 1:
            srv.release.wait(3.0)
        return completion("second try")

    srv = serve(routed(handler))
    eng = OpenAICompatibleEngine(srv.url, model="m", http=HTTPSettings(timeout=0.3, retries=1, backoff=0.01))
    assert eng.generate([StepRequest("p")])[0].text == "second try"
    assert len(srv.on("/v1/completions")) == 2


# ---------------------------------------------------------------------------------------------
# (g) several servers, GET /health
# ---------------------------------------------------------------------------------------------
def test_requests_are_spread_over_replicas_by_problem(serve):
    a, b = serve(routed(lambda req: completion("a"))), serve(routed(lambda req: completion("b")))
    eng = OpenAICompatibleEngine(f"{a.url},{b.url}", model="m", http=FAST)
    first = eng.generate([StepRequest(f"problem-{i}") for i in range(16)])
    assert a.on("/v1/completions") and b.on("/v1/completions")
    assert eng.generate([StepRequest(f"problem-{i}") for i in range(16)]) == first  # a problem keeps its server


def test_dead_replica_is_left_out_and_tried_again_later(serve, monkeypatch):
    import types

    from trim_rl.live import http as http_module

    # the replicas' time out is read from a clock the test moves, so a slow machine cannot end it early
    clock = [time.monotonic()]
    monkeypatch.setattr(http_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    state = {"down": True}

    def flaky(req):
        return (503, {"error": {"message": "restarting"}}) if state["down"] else completion("b")

    a, b = serve(routed(lambda req: completion("a"))), serve(routed(flaky))
    http = HTTPSettings(timeout=5, retries=2, backoff=0.01, down_s=1.0)
    dead = f"http://127.0.0.1:{_closed_port()}"
    eng = OpenAICompatibleEngine(f"{a.url},{b.url},{dead}", model="m", http=http)
    out = eng.generate([StepRequest(f"problem-{i}") for i in range(12)])
    assert {r.text for r in out} == {"a"}  # b and the dead one failed: everything went to a
    n_b = len(b.on("/v1/completions"))
    assert n_b >= 1  # b had its share of the first wave, then was left out
    clock[0] += 0.9
    assert len(eng.generate([StepRequest(f"problem-{i}") for i in range(12)])) == 12
    assert len(b.on("/v1/completions")) == n_b  # still out
    state["down"] = False
    clock[0] += 0.15  # past its 1 s out
    out = eng.generate([StepRequest(f"problem-{i}") for i in range(12)])
    assert {r.text for r in out} == {"a", "b"}  # back in


def test_health_is_polled_before_the_first_request(serve):
    vllm = FakeVLLM(model="m", health=lambda n: 503 if n < 3 else 200, gen=lambda q, p: ("x", "stop", "\n\n"))
    srv = serve(vllm)
    eng = OpenAICompatibleEngine(srv.url, http=FAST, wait_ready_s=10)
    assert [r.path for r in srv.requests[:4]] == ["/health"] * 3 + ["/v1/models"]
    assert eng.generate([StepRequest("p")])[0].text == "x"


def test_server_without_health_route_counts_as_ready(serve):
    """llama-cpp-python's server has no /health: its 404 means it is up."""
    srv = serve(lambda req: models("m") if req.path == "/v1/models" else not_found(req))
    OpenAICompatibleEngine(srv.url, http=FAST, wait_ready_s=5)
    assert [r.path for r in srv.requests] == ["/health", "/v1/models"]


def test_no_server_ready_is_an_error_naming_it():
    url = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    with pytest.raises(EngineError, match="not ready after 1.5 s") as ei:
        OpenAICompatibleEngine(url, http=FAST, wait_ready_s=1.5)
    assert 1.0 < time.perf_counter() - t0 < 4
    assert ei.value.url == url + "/health"


def test_context_error_text_is_recognised():
    from trim_rl.live.http import is_context_error

    status, body = context_error(4096, 5000)
    assert is_context_error(status, str(body))
    assert not is_context_error(400, "max_tokens is too large")


def test_older_vllm_max_tokens_refusal_is_asked_again_for_what_fits(serve):
    """vLLM 0.10.2 (``entrypoints/openai/serving_engine.py`` ``_validate_input``) answers 400 when prompt +
    max_tokens passes the context instead of clamping; the engine asks again for the tokens left."""
    def handler(req):
        p = req.payload
        if p["max_tokens"] > 6:
            return 400, {"object": "error", "message": f"'max_tokens' or 'max_completion_tokens' is too large: "
                         f"{p['max_tokens']}. This model's maximum context length is 100 tokens and your request has "
                         f"94 input tokens ({p['max_tokens']} > 100 - 94).", "type": "BadRequestError", "param": None,
                         "code": 400}
        return completion("last words", "length", tokens=6)

    srv = serve(routed(handler))
    eng = OpenAICompatibleEngine(srv.url, model="m", sampling=Sampling(max_tokens=32), http=FAST)
    assert eng.generate([StepRequest("p")]) == [StepResult("last words", 6, "length")]
    assert [r.payload["max_tokens"] for r in srv.on("/v1/completions")] == [32, 6]


def test_room_left_reads_both_vllm_messages():
    from trim_rl.live.engines import room_left

    assert room_left("'max_tokens' ... is too large: 256. This model's maximum context length is 8192 tokens and "
                     "your request has 8000 input tokens (256 > 8192 - 8000).") == 192
    assert room_left("This model's maximum context length is 4096 tokens. However, you requested 4300 tokens (4044 "
                     "in the messages, 256 in the completion). Please reduce the length of the messages or "
                     "completion.") == 52
    assert room_left("This model's maximum context length is 4096 tokens. However, your prompt contains 5000 input "
                     "tokens, which exceeds this limit even without any output tokens.") is None
