"""step_probabilities and VLLMPoolingPRM against a real HTTP server emulating vLLM's ``/pooling``."""

from __future__ import annotations

import math

import pytest
from _stub_server import models, not_found, serve_fixture

from trim_rl.live.http import EngineError, HTTPSettings
from trim_rl.live.prm import QWEN_PRM_SYSTEM, STEP_TAG, STEP_TAG_ID, VLLMPoolingPRM, step_probabilities

FAST = HTTPSettings(timeout=5.0, retries=1, backoff=0.01)
PROBLEM = "What is (3 + 4) * 2?"
STEPS = ["First, 3 + 4 = 7.", "Then 7 * 2 = 15.", "So the answer is \\boxed{15}."]


@pytest.fixture
def serve():
    yield from serve_fixture()


def pooling_answer(rows) -> dict:
    """vLLM's ``/pooling`` answer for one prompt."""
    return {"id": "pool-1", "object": "list", "created": 0, "model": "prm",
            "data": [{"index": 0, "object": "pooling", "data": rows}],
            "usage": {"prompt_tokens": 50, "total_tokens": 50}}


def chatml_prm_prompt(problem: str, steps) -> str:
    """The Qwen2.5-Math-PRM input, written out by hand."""
    return ("<|im_start|>system\n" + QWEN_PRM_SYSTEM + "<|im_end|>\n"
            "<|im_start|>user\n" + problem + "<|im_end|>\n"
            "<|im_start|>assistant\n" + "".join(s + "<extra_0>" for s in steps) + "<|im_end|>\n")


def n_tags(prompt: str) -> int:
    return prompt.count(STEP_TAG)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _softmax_pos(neg: float, pos: float) -> float:
    return math.exp(pos) / (math.exp(neg) + math.exp(pos))


# ---------------------------------------------------------------------------------------------
# step_probabilities on its own
# ---------------------------------------------------------------------------------------------
def test_step_probabilities_reads_every_row_format():
    assert step_probabilities([[0.3, 0.7], [0.9, 0.1]], 2) == pytest.approx([0.7, 0.1])
    assert step_probabilities([[-1.0, 2.0], [0.5, 0.25]], 2) == pytest.approx([_softmax_pos(-1, 2), _softmax_pos(0.5, 0.25)])
    assert step_probabilities([0.25, 0.8], 2) == pytest.approx([0.25, 0.8])  # one probability per step
    assert step_probabilities([[2.0], [-3.0]], 2) == pytest.approx([_sigmoid(2.0), _sigmoid(-3.0)])  # one logit
    assert step_probabilities({"data": [[0.4, 0.6]]}, 1) == pytest.approx([0.6])


def test_bfloat16_probability_rows_are_not_softmaxed_again():
    """vLLM casts the PRM's softmax back to the model dtype (bfloat16 for Qwen2.5-Math-PRM-7B), so a
    probability row can sum to 1 +- 2e-3; it must still be read as probabilities."""
    rows = [[0.99609375, 0.00250244140625],  # bf16 of (0.9975, 0.0025): sums to 0.9986
            [0.279296875, 0.71875],  # bf16 of (0.28, 0.72): sums to 0.9980
            [0.10009765625, 0.8984375]]  # bf16 of (0.1, 0.9): sums to 0.9985
    assert step_probabilities(rows, 3) == [0.00250244140625, 0.71875, 0.8984375]


def test_step_probabilities_picks_rows_at_the_step_tags():
    token_ids = [5, 6, STEP_TAG_ID, 7, 8, 9, STEP_TAG_ID, 10]
    rows = [[1 - p, p] for p in (0.01, 0.02, 0.91, 0.03, 0.04, 0.05, 0.37, 0.06)]
    assert step_probabilities(rows, 2) is None  # per-token rows need token ids
    assert step_probabilities(rows, 2, token_ids) == pytest.approx([0.91, 0.37])
    assert step_probabilities(rows, 2, [t if t != STEP_TAG_ID else 42 for t in token_ids], step_tag_id=42) \
        == pytest.approx([0.91, 0.37])
    with pytest.raises(ValueError, match="1 step tags for 2 steps"):
        step_probabilities(rows, 2, token_ids[:6] + [11, 12])
    with pytest.raises(ValueError, match="rows"):  # fewer rows than prompt tokens
        step_probabilities(rows[:7], 2, token_ids + [13])


# ---------------------------------------------------------------------------------------------
# VLLMPoolingPRM against a server
# ---------------------------------------------------------------------------------------------
def test_step_pooled_probability_rows(serve):
    expected = [0.83, 0.12, 0.64]

    def handler(req):
        if req.path == "/v1/models":
            return models("Qwen/Qwen2.5-Math-PRM-7B")
        if req.path == "/pooling":
            k = n_tags(req.payload["input"])
            return pooling_answer([[1 - p, p] for p in expected[:k]])
        return not_found(req)

    srv = serve(handler)
    prm = VLLMPoolingPRM(srv.url, http=FAST)
    assert prm.model == prm.name == "Qwen/Qwen2.5-Math-PRM-7B"
    assert prm.score([(PROBLEM, STEPS), (PROBLEM, STEPS[:2])]) == [pytest.approx(expected), pytest.approx(expected[:2])]
    assert prm.score_last([(PROBLEM, STEPS), (PROBLEM, STEPS[:1])]) == pytest.approx([0.64, 0.83])
    assert srv.on("/tokenize") == []  # step-pooled rows need no token ids

    pool = srv.on("/pooling")
    assert len(pool) == 4  # one request per item
    # items of one call are sent at once, so they may arrive in any order
    (first,) = [r.payload for r in pool[:2] if n_tags(r.payload["input"]) == 3]
    assert first["model"] == "Qwen/Qwen2.5-Math-PRM-7B"
    assert first["encoding_format"] == "float"
    assert "task" not in first  # the first attempt leaves the task to the server
    assert first["input"] == chatml_prm_prompt(PROBLEM, STEPS)
    assert PROBLEM in first["input"]
    for s in STEPS:
        assert s + "<extra_0>" in first["input"]
    assert first["input"].endswith("\\boxed{15}.<extra_0><|im_end|>\n")


def test_logit_rows_go_through_softmax(serve):
    logits = [[-1.5, 2.0], [1.0, -0.5], [0.3, 0.2]]  # rows do not sum to 1

    def handler(req):
        return pooling_answer(logits[: n_tags(req.payload["input"])])

    srv = serve(handler)
    prm = VLLMPoolingPRM(srv.url, model="prm", http=FAST)
    got = prm.score([(PROBLEM, STEPS)])[0]
    assert got == pytest.approx([_softmax_pos(*r) for r in logits])
    assert 0.9 < got[0] < 1.0 and got[1] < 0.2  # not the raw second logit


def _fake_tokens(prompt: str) -> list[int]:
    """A tokenization of ``prompt`` where STEP_TAG_ID stands exactly where ``<extra_0>`` does; the text
    between tags becomes a few ordinary ids (their number depends on the text, so the tag positions
    are irregular)."""
    parts = prompt.split(STEP_TAG)
    ids: list[int] = []
    for j, part in enumerate(parts):
        ids += [1000 + (j * 7 + i) % 500 for i in range(3 + len(part) % 11)]
        if j < len(parts) - 1:
            ids.append(STEP_TAG_ID)
    return ids


def test_per_token_rows_are_picked_at_the_step_tags(serve):
    step_scores = [0.917, 0.233, 0.571]

    def rows_for(prompt: str):
        ids = _fake_tokens(prompt)
        rows, k = [], 0
        for i, t in enumerate(ids):
            if t == STEP_TAG_ID:
                p = step_scores[k]
                k += 1
            else:
                p = 0.001 * (i % 97)  # every other row is distinctive too: neighbours would not pass
            rows.append([1 - p, p])
        return rows

    def handler(req):
        if req.path == "/pooling":
            return pooling_answer(rows_for(req.payload["input"]))
        if req.path == "/tokenize":
            ids = _fake_tokens(req.payload["prompt"])
            return {"count": len(ids), "max_model_len": 4096, "tokens": ids}
        return not_found(req)

    srv = serve(handler)
    prm = VLLMPoolingPRM(srv.url, model="prm", http=FAST)
    items = [(PROBLEM, STEPS), ("Another problem?", STEPS[:2])]
    assert prm.score(items) == [pytest.approx(step_scores), pytest.approx(step_scores[:2])]

    tok = sorted((r.payload for r in srv.on("/tokenize")), key=lambda p: n_tags(p["prompt"]), reverse=True)
    assert tok == [{"model": "prm", "prompt": chatml_prm_prompt(PROBLEM, STEPS), "add_special_tokens": False},
                   {"model": "prm", "prompt": chatml_prm_prompt("Another problem?", STEPS[:2]),
                    "add_special_tokens": False}]
    assert sorted(r.payload["input"] for r in srv.on("/pooling")) == sorted(t["prompt"] for t in tok)


def test_per_token_rows_with_wrong_tag_count_raise(serve):
    def handler(req):
        if req.path == "/pooling":
            return pooling_answer([[0.5, 0.5]] * 40)
        return {"count": 40, "tokens": [1] * 39 + [STEP_TAG_ID]}  # one tag for three steps

    srv = serve(handler)
    prm = VLLMPoolingPRM(srv.url, model="prm", http=FAST)
    with pytest.raises(ValueError, match="1 step tags for 3 steps"):
        prm.score([(PROBLEM, STEPS)])


def test_retries_with_token_classify_task_when_server_asks(serve):
    def handler(req):
        if req.payload.get("task") != "token_classify":
            return 400, {"object": "error", "message": "Please specify the pooling task: token_classify or embed",
                         "type": "BadRequestError", "code": 400}
        return pooling_answer([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]][: n_tags(req.payload["input"])])

    srv = serve(handler)
    prm = VLLMPoolingPRM(srv.url, model="prm", http=FAST)
    assert prm.score([(PROBLEM, STEPS)]) == [pytest.approx([0.8, 0.4, 0.9])]
    assert [r.payload.get("task") for r in srv.requests] == [None, "token_classify"]
    assert srv.requests[0].payload["input"] == srv.requests[1].payload["input"]

    # the scorer remembers the task that worked: the next call goes straight to it
    assert prm.score_last([(PROBLEM, STEPS[:2])]) == pytest.approx([0.4])
    assert [r.payload.get("task") for r in srv.requests[2:]] == ["token_classify"]


def test_falls_back_to_reward_task(serve):
    def handler(req):
        if req.payload.get("task") != "reward":
            return 400, {"message": f"task {req.payload.get('task')!r} is not supported by this model"}
        return pooling_answer([[0.3, 0.7]])

    srv = serve(handler)
    prm = VLLMPoolingPRM(srv.url, model="prm", http=FAST)
    assert prm.score_last([(PROBLEM, STEPS[:1])]) == pytest.approx([0.7])
    assert [r.payload.get("task") for r in srv.requests] == [None, "token_classify", "reward"]


def test_other_400_errors_are_not_retried_with_a_task(serve):
    srv = serve(lambda req: (400, {"message": "This model's maximum context length is 4096 tokens"}))
    prm = VLLMPoolingPRM(srv.url, model="prm", http=FAST)
    with pytest.raises(EngineError) as ei:
        prm.score([(PROBLEM, STEPS)])
    assert ei.value.status == 400
    assert len(srv.requests) == 1


def test_unexpected_pooling_answer_raises_engine_error(serve):
    srv = serve(lambda req: {"object": "list", "data": []})
    prm = VLLMPoolingPRM(srv.url, model="prm", http=FAST)
    with pytest.raises(EngineError, match="unexpected answer") as ei:
        prm.score([(PROBLEM, STEPS)])
    assert ei.value.url == srv.url + "/pooling"
