"""SelfVerifyScorer against a real HTTP server answering legacy completions with top logprobs, in
vLLM's form (:mod:`_vllm`) and llama-server's (:mod:`_llama_server`)."""

from __future__ import annotations

import math
import re

import pytest
from _llama_server import FakeLlamaServer
from _stub_server import StubServer, models, not_found, serve_fixture
from _vllm import FakeVLLM

from trim_rl.live.http import EngineError, HTTPSettings
from trim_rl.live.prm import SelfVerifyScorer

FAST = HTTPSettings(timeout=5.0, retries=1, backoff=0.01)
LN = math.log


@pytest.fixture
def serve():
    yield from serve_fixture()


def logprob_answer(top: dict | list) -> dict:
    """A ``/v1/completions`` answer with ``max_tokens=1`` and ``logprobs``."""
    if isinstance(top, dict):
        first = next(iter(top), " ")
    else:
        first = top[0]["token"] if top else " "
    return {"object": "text_completion", "model": "m",
            "choices": [{"index": 0, "text": first, "finish_reason": "length",
                         "logprobs": {"tokens": [first], "token_logprobs": [-0.1], "text_offset": [0],
                                      "top_logprobs": [top]}}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41}}


def _score_with(serve, top) -> tuple[float, StubServer]:
    srv = serve(lambda req: logprob_answer(top))
    scorer = SelfVerifyScorer(srv.url, model="m", http=FAST)
    return scorer.score_last([("p", ["s"])])[0], srv


def test_p_yes_over_yes_plus_no(serve):
    got, _ = _score_with(serve, {" Yes": LN(0.6), " no": LN(0.2), " Maybe": LN(0.15)})
    assert got == pytest.approx(0.6 / 0.8)


def test_yes_and_no_variants_are_summed_case_and_space_insensitively(serve):
    top = {" Yes": LN(0.3), "yes": LN(0.1), "YES": LN(0.05), " NO": LN(0.2), "No": LN(0.1), "\nno": LN(0.05),
           " yesterday": LN(0.1), " Not": LN(0.1)}
    got, _ = _score_with(serve, top)
    assert got == pytest.approx(0.45 / (0.45 + 0.35))


def test_only_no_gives_zero_and_only_yes_gives_one(serve):
    assert _score_with(serve, {" No": LN(0.9), " The": LN(0.05)})[0] == pytest.approx(0.0)
    assert _score_with(serve, {"Yes": LN(0.01), " The": LN(0.9)})[0] == pytest.approx(1.0)


@pytest.mark.parametrize("top", [{" The": LN(0.5), " Step": LN(0.3)}, {}])
def test_half_when_neither_yes_nor_no(serve, top):
    got, _ = _score_with(serve, top)
    assert got == 0.5


def test_half_when_no_logprobs_at_all(serve):
    srv = serve(lambda req: {"choices": [{"text": "Yes", "logprobs": None, "finish_reason": "length"}]})
    scorer = SelfVerifyScorer(srv.url, model="m", http=FAST)
    assert scorer.score_last([("p", ["s"])]) == [0.5]


def test_chat_style_top_logprobs_list(serve):
    top = [{"token": "Yes", "logprob": LN(0.2)}, {"token": " no", "logprob": LN(0.6)}]
    got, _ = _score_with(serve, top)
    assert got == pytest.approx(0.25)


def test_llama_server_logprobs_format(serve):
    """llama.cpp's ``llama-server`` answers /v1/completions with
    ``logprobs: {"content": [{token, logprob, top_logprobs: [{id, token, bytes, logprob}]}]}``."""
    top = [{"id": 7, "token": " Yes", "bytes": [32, 89, 101, 115], "logprob": LN(0.3)},
           {"id": 8, "token": " No", "bytes": [32, 78, 111], "logprob": LN(0.6)},
           {"id": 9, "token": " The", "bytes": [32, 84, 104, 101], "logprob": LN(0.05)}]
    answer = {"object": "text_completion", "model": "m",
              "choices": [{"text": " No", "index": 0, "finish_reason": "length",
                           "logprobs": {"content": [{"id": 8, "token": " No", "bytes": [32, 78, 111],
                                                     "logprob": LN(0.6), "top_logprobs": top}]}}],
              "usage": {"completion_tokens": 1, "prompt_tokens": 40, "total_tokens": 41}}
    srv = serve(lambda req: answer)
    scorer = SelfVerifyScorer(srv.url, model="m", http=FAST)
    assert scorer.score_last([("p", ["s"])]) == pytest.approx([1 / 3])


def test_request_payload(serve):
    _, srv = _score_with(serve, {" yes": LN(0.5)})
    (req,) = srv.requests
    assert req.path == "/v1/completions"
    p = req.payload
    assert (p["model"], p["max_tokens"], p["temperature"], p["logprobs"]) == ("m", 1, 0.0, 10)
    assert p["prompt"].startswith("<|im_start|>user\n")
    assert p["prompt"].endswith("Is Step 1 correct? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n")


def test_score_asks_once_per_step_and_maps_answers_back(serve):
    """Step n of problem P is answered with P(yes) = P_n / 10 (read from the prompt), so every score
    shows which request it came from."""
    base = {"Problem A": 0.0, "Problem B": 0.5}

    def handler(req):
        if req.path == "/v1/models":
            return models("verifier")
        if req.path != "/v1/completions":
            return not_found(req)
        prompt = req.payload["prompt"]
        n = int(re.search(r"Is Step (\d+) correct\?", prompt).group(1))
        problem = re.search(r"Problem:\n(Problem [AB])\n", prompt).group(1)
        p_yes = base[problem] + n / 10
        return logprob_answer({" yes": LN(p_yes), " no": LN(1 - p_yes)})

    srv = serve(handler)
    scorer = SelfVerifyScorer(srv.url, http=FAST, top_logprobs=5)
    assert scorer.name == "self-verify:verifier"
    items = [("Problem A", ["a1", "a2", "a3"]), ("Problem B", ["b1"]), ("Problem A", ["a1", "a2"])]
    got = scorer.score(items)
    assert got == [pytest.approx([0.1, 0.2, 0.3]), pytest.approx([0.6]), pytest.approx([0.1, 0.2])]

    comp = srv.on("/v1/completions")
    assert len(comp) == 6  # one request per prefix
    prompts = sorted((r.payload["prompt"] for r in comp), key=len)
    assert all(r.payload["logprobs"] == 5 for r in comp)
    a3 = [q for q in prompts if "Problem A" in q and "Is Step 3 correct?" in q]
    assert len(a3) == 1 and all(f"Step {i}: a{i}" in a3[0] for i in (1, 2, 3))
    a1 = [q for q in prompts if "Problem A" in q and "Is Step 1 correct?" in q]
    assert len(a1) == 2  # items 0 and 2 share the first prefix
    assert all("Step 1: a1" in q and "a2" not in q for q in a1)

    assert scorer.score_last(items) == pytest.approx([0.3, 0.6, 0.2])
    assert len(srv.on("/v1/completions")) == 9


def test_unexpected_answer_raises_engine_error(serve):
    srv = serve(lambda req: {"choices": []})
    scorer = SelfVerifyScorer(srv.url, model="m", http=FAST)
    with pytest.raises(EngineError, match="unexpected answer"):
        scorer.score_last([("p", ["s"])])


@pytest.mark.parametrize("bad", ["NaN", "3.5", "\"high\""])
def test_bad_logprob_is_a_server_error_naming_server_and_field(serve, bad):
    body = ('{"choices": [{"index": 0, "text": " yes", "finish_reason": "length", "logprobs": {"tokens": [" yes"], '
            '"token_logprobs": [-0.1], "top_logprobs": [{" yes": ' + bad + ', " no": -2.0}]}}]}')
    srv = serve(lambda req: body)
    scorer = SelfVerifyScorer(srv.url, model="m", http=FAST)
    with pytest.raises(EngineError, match=r"logprobs\.top_logprobs\[0\]\[' yes'\]") as ei:
        scorer.score_last([("p", ["s"])])
    assert ei.value.url == srv.url + "/v1/completions"


def _by_step(prompt: str) -> dict:
    """P(yes) = n / 100 for the question about Step n: each answer shows which question it came from."""
    n = int(re.search(r"Is Step (\d+) correct\?", prompt).group(1))
    return {" yes": LN(n / 100), " no": LN(1 - n / 100), " The": LN(1e-4)}


def _items(n: int) -> list:
    return [("p", [f"s{j}" for j in range(i + 1)]) for i in range(n)]


def test_questions_go_several_per_request_to_vllm(serve):
    """vLLM answers a list of prompts with one choice per prompt, by ``index``."""
    fake = FakeVLLM(model="m", gen=lambda prompt, p: (" yes", "length", None), top=_by_step)
    srv = serve(fake)
    scorer = SelfVerifyScorer(srv.url, http=FAST)
    assert scorer.prompts_per_request == 32  # owned_by "vllm"
    got = scorer.score_last(_items(40))
    assert got == pytest.approx([(i + 1) / 100 for i in range(40)])
    sizes = sorted(len(r.payload["prompt"]) for r in srv.on("/v1/completions"))
    assert sizes == [8, 32] and scorer.batch_error is None


def test_llama_servers_array_of_answers_to_several_questions(serve):
    """llama-server answers a list of prompts with a JSON array of completion objects, each with its
    logprobs in the chat form."""
    fake = FakeLlamaServer(gen=lambda prompt, p: (" yes", "length"), top=_by_step)
    srv = serve(fake)
    assert SelfVerifyScorer(srv.url, http=FAST).prompts_per_request == 1  # owned_by "llamacpp"
    scorer = SelfVerifyScorer(srv.url, http=FAST, prompts_per_request=4)
    got = scorer.score_last(_items(6))
    assert got == pytest.approx([(i + 1) / 100 for i in range(6)])
    assert sorted(fake.seen) == [2, 4] and scorer.batch_error is None


def test_a_question_past_llama_servers_context_drops_the_earliest_steps(serve):
    fake = FakeLlamaServer(n_ctx=120, gen=lambda prompt, p: (" yes", "length"), top=_by_step)
    srv = serve(fake)
    scorer = SelfVerifyScorer(srv.url, http=FAST, prompts_per_request=4)
    long = ("p", [f"s{j} " + "x" * 60 for j in range(12)])
    (d_short, d_long) = scorer.score_last_detail([("p", ["s0", "s1"]), long])
    assert d_short.value == pytest.approx(0.02) and d_short.dropped == 0
    assert d_long.dropped > 0 and d_long.value == pytest.approx((12 - d_long.dropped) / 100)
    assert fake.seen[:3] == [2, 1, 1]  # the request of both failed whole; each asked alone


def test_unreadable_answer_to_several_questions_is_asked_again_one_per_request(serve):
    """A server that answers a list of prompts with one choice only: those questions are asked
    again one per request, and so are later ones."""
    def handler(req):
        prompts = req.payload["prompt"]
        return logprob_answer(_by_step(prompts[0] if isinstance(prompts, list) else prompts))

    srv = serve(handler)
    scorer = SelfVerifyScorer(srv.url, model="m", http=FAST, prompts_per_request=3)
    assert scorer.score_last(_items(3)) == pytest.approx([0.01, 0.02, 0.03])
    assert scorer.prompts_per_request == 1 and "unexpected answer" in scorer.batch_error
    assert [isinstance(r.payload["prompt"], list) for r in srv.requests] == [True, False, False, False]
    assert scorer.score_last(_items(2)) == pytest.approx([0.01, 0.02])
    assert len(srv.requests) == 6


def test_llama_server_tokens_sharing_a_text_are_summed(serve):
    """Two token ids with the same text (" Yes" as one token and as a merge) both count."""
    top = [{"id": 7, "token": " Yes", "bytes": [], "logprob": LN(0.2)},
           {"id": 70, "token": " Yes", "bytes": [], "logprob": LN(0.2)},
           {"id": 8, "token": " No", "bytes": [], "logprob": LN(0.4)}]
    answer = {"choices": [{"text": " No", "index": 0, "finish_reason": "length",
                           "logprobs": {"content": [{"id": 8, "token": " No", "bytes": [], "logprob": LN(0.4),
                                                     "top_logprobs": top}]}}]}
    srv = serve(lambda req: answer)
    assert SelfVerifyScorer(srv.url, model="m", http=FAST).score_last([("p", ["s"])]) == pytest.approx([0.5])


@pytest.mark.parametrize("template, answer_turn", [("chatml", "<|im_start|>assistant\n"),
                                                   ("llama3", "<|start_header_id|>assistant<|end_header_id|>\n\n")])
def test_the_continued_question_starts_with_the_step_prompt_that_follows_the_steps(serve, template, answer_turn):
    """A prefix cache that holds a step's generation holds the start of its check: the question sent is
    the step prompt after those steps (system, problem, steps), then the question as a user turn."""
    from trim_rl.live.prm import CONTINUED_QUESTION
    from trim_rl.live.prompts import ChatTemplate, step_prompt

    srv = serve(lambda req: logprob_answer({" yes": LN(0.5)}))
    tpl = ChatTemplate.resolve(template)
    steps = ["Let x = 2.", "Then 2x = 4."]
    continued = SelfVerifyScorer(srv.url, model="m", http=FAST, template=tpl, verify_prompt="continued")
    assert continued.score_last([("What is 2x?", steps)]) == [1.0]
    sent = srv.on("/v1/completions")[-1].payload["prompt"]
    prefix = step_prompt(tpl, "What is 2x?", steps)
    assert sent.startswith(prefix) and sent.endswith(answer_turn)
    assert CONTINUED_QUESTION in sent[len(prefix):] and "Step 2" not in sent
    separate = SelfVerifyScorer(srv.url, model="m", http=FAST, template=tpl)
    separate.score_last([("What is 2x?", steps)])
    other = srv.on("/v1/completions")[-1].payload["prompt"]
    assert "Step 2: Then 2x = 4." in other and not other.startswith(step_prompt(tpl, "What is 2x?", []))


def test_an_unknown_verify_prompt_is_refused_naming_the_flag(serve):
    srv = serve(lambda req: logprob_answer({}))
    with pytest.raises(ValueError, match="--verify-prompt.*separate, continued.*'joined'"):
        SelfVerifyScorer(srv.url, model="m", http=FAST, verify_prompt="joined")
