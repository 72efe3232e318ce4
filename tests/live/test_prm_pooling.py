"""step_probabilities and VLLMPoolingPRM against a real HTTP server answering ``/pooling`` as vLLM does.

What vLLM returns for Qwen2.5-Math-PRM (one softmaxed ``[p_neg, p_pos]`` row per ``<extra_0>``,
``input`` a list, ``data[].index``, the context-length 400) is documented in :mod:`_vllm`, read from
vLLM 0.32's ``entrypoints/pooling/pooling/{protocol,serving}.py``, ``model_executor/models/qwen2_rm.py``
and ``model_executor/models/config.py``.
"""

from __future__ import annotations

import math
import re

import pytest
from _stub_server import not_found, serve_fixture
from _vllm import STEP_TAG, FakeVLLM

from trim_rl.live.http import EngineError, HTTPSettings
from trim_rl.live.prm import QWEN_PRM_SYSTEM, STEP_TAG_ID, VLLMPoolingPRM, step_probabilities

FAST = HTTPSettings(timeout=5.0, retries=1, backoff=0.01)
PROBLEM = "What is (3 + 4) * 2?"
STEPS = ["First, 3 + 4 = 7.", "Then 7 * 2 = 15.", "So the answer is \\boxed{15}."]
PRM_MODEL = "Qwen/Qwen2.5-Math-PRM-7B"


@pytest.fixture
def serve():
    yield from serve_fixture()


def chatml_prm_prompt(problem: str, steps) -> str:
    """The Qwen2.5-Math-PRM input, written out by hand."""
    return ("<|im_start|>system\n" + QWEN_PRM_SYSTEM + "<|im_end|>\n"
            "<|im_start|>user\n" + problem + "<|im_end|>\n"
            "<|im_start|>assistant\n" + "".join(s + "<extra_0>" for s in steps) + "<|im_end|>\n")


def by_step_text(prompt: str) -> list[float]:
    """A PRM whose score of a step is read from the step's text ("[p=0.37]"), else 0.5 + 0.01 * its
    position: every score shows which step it belongs to."""
    answer = prompt.split("<|im_start|>assistant\n", 1)[1]
    parts = answer.split(STEP_TAG)[:-1]
    out = []
    for i, part in enumerate(parts):
        m = re.search(r"\[p=([0-9.]+)\]", part)
        out.append(float(m.group(1)) if m else 0.5 + 0.01 * i)
    return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _softmax_pos(neg: float, pos: float) -> float:
    return math.exp(pos) / (math.exp(neg) + math.exp(pos))


# ---------------------------------------------------------------------------------------------
# step_probabilities on its own
# ---------------------------------------------------------------------------------------------
def test_step_probabilities_reads_every_row_format():
    assert step_probabilities([[0.3, 0.7], [0.9, 0.1]], 2) == pytest.approx([0.7, 0.1])
    # a server started with use_activation false returns logits
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
    """Per-token rows (a server started with ``--pooler-config '{"pooling_type": "ALL"}'``)."""
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


@pytest.mark.parametrize("rows", [[[0.5, float("nan")]], [[0.5, "0.5"]], [None], [[float("inf"), 0.0]], [[]], [True]])
def test_bad_numbers_in_rows_are_server_errors_naming_the_field(rows):
    with pytest.raises(EngineError, match=r"bad value in the answer: data\[\]\.data") as ei:
        step_probabilities(rows, 1, where="http://prm:8003/pooling")
    assert ei.value.url == "http://prm:8003/pooling"


# ---------------------------------------------------------------------------------------------
# VLLMPoolingPRM against a server that answers as vLLM does
# ---------------------------------------------------------------------------------------------
def test_every_input_of_a_call_goes_in_one_pooling_request(serve):
    srv = serve(FakeVLLM(model=PRM_MODEL, prm=by_step_text))
    prm = VLLMPoolingPRM(srv.url, http=FAST)
    assert prm.model == prm.name == PRM_MODEL
    items = [(PROBLEM, [s + " [p=0.83]" for s in STEPS]), (PROBLEM, ["a [p=0.12]"]), ("Other?", ["b", "c [p=0.64]"])]
    assert prm.score_last(items) == pytest.approx([0.83, 0.12, 0.64])
    assert prm.score([("Other?", ["b [p=0.2]", "c"])]) == [pytest.approx([0.2, 0.51])]

    first, second = srv.on("/pooling")
    assert first.payload["input"] == [chatml_prm_prompt(p, s) for p, s in items]
    assert first.payload["model"] == PRM_MODEL and first.payload["encoding_format"] == "float"
    assert first.payload["add_special_tokens"] is False
    assert "task" not in first.payload  # the server's own task: token_classify for a PRM
    assert srv.on("/tokenize") == []  # step-pooled rows need no token ids


def test_outputs_are_matched_to_inputs_by_index(serve):
    """A server may list the outputs in any order; each carries its input's index."""
    def handler(req):
        if req.path == "/v1/models":
            return {"object": "list", "data": [{"id": "prm", "owned_by": "vllm"}]}
        data = [{"index": i, "object": "pooling", "data": [[0.9 - 0.1 * i, 0.1 * (i + 1)]]} for i in range(len(req.payload["input"]))]
        return {"object": "list", "model": "prm", "data": list(reversed(data)), "usage": {}}

    srv = serve(handler)
    prm = VLLMPoolingPRM(srv.url, http=FAST)
    assert prm.score_last([(PROBLEM, ["s"])] * 3) == pytest.approx([0.1, 0.2, 0.3])


def test_inputs_are_spread_over_prm_replicas(serve):
    a, b = serve(FakeVLLM(model="prm", prm=by_step_text)), serve(FakeVLLM(model="prm", prm=by_step_text))
    prm = VLLMPoolingPRM(f"{a.url},{b.url}", http=FAST)
    items = [(f"problem {i}", [f"s [p=0.{i}]"]) for i in range(1, 9)]
    assert prm.score_last(items) == pytest.approx([i / 10 for i in range(1, 9)])
    assert len(a.on("/pooling")) == len(b.on("/pooling")) == 1
    assert len(a.on("/pooling")[0].payload["input"]) == len(b.on("/pooling")[0].payload["input"]) == 4


def test_per_token_rows_are_picked_with_tokenize(serve):
    """A PRM server with ALL pooling: one row per prompt token; the rows at ``<extra_0>`` are found
    with the token ids of ``/tokenize``."""
    def fake_tokens(prompt: str) -> list[int]:
        ids = []
        for j, part in enumerate(prompt.split(STEP_TAG)):
            ids += [1000 + (j * 7 + i) % 500 for i in range(3 + len(part) % 11)]
            ids.append(STEP_TAG_ID)
        return ids[:-1]

    def handler(req):
        if req.path == "/v1/models":
            return {"object": "list", "data": [{"id": "prm", "owned_by": "vllm"}]}
        if req.path == "/pooling":
            data = []
            for i, q in enumerate(req.payload["input"]):
                scores = iter(by_step_text(q))
                rows = []
                for t in fake_tokens(q):
                    p = next(scores) if t == STEP_TAG_ID else 0.001
                    rows.append([1 - p, p])
                data.append({"index": i, "object": "pooling", "data": rows})
            return {"object": "list", "model": "prm", "data": data, "usage": {}}
        if req.path == "/tokenize":
            ids = fake_tokens(req.payload["prompt"])
            return {"count": len(ids), "max_model_len": 4096, "tokens": ids}
        return not_found(req)

    srv = serve(handler)
    prm = VLLMPoolingPRM(srv.url, http=FAST)
    items = [(PROBLEM, ["a [p=0.917]", "b [p=0.233]", "c [p=0.571]"]), ("Another?", ["d [p=0.3]", "e"])]
    assert prm.score(items) == [pytest.approx([0.917, 0.233, 0.571]), pytest.approx([0.3, 0.51])]
    tok = [r.payload for r in srv.on("/tokenize")]
    assert sorted(t["prompt"] for t in tok) == sorted(chatml_prm_prompt(p, s) for p, s in items)
    assert all(t["add_special_tokens"] is False for t in tok)


def test_long_solution_drops_the_earliest_steps_keeping_system_and_problem(serve):
    """The PRM's context (300 stub tokens) holds the problem and about 8 of these steps: the newest
    step is scored with the fewest earliest steps left out, and the next call of the same solution
    starts there (one request)."""
    vllm = FakeVLLM(model=PRM_MODEL, max_model_len=300, prm=by_step_text)
    srv = serve(vllm)
    prm = VLLMPoolingPRM(srv.url, http=FAST)
    steps = [f"Step {i}: " + "x" * 100 + f" [p=0.{i:02d}]" for i in range(1, 21)]
    short = (PROBLEM, steps[:3])
    (d_long, d_short) = prm.score_last_detail([(PROBLEM, steps), short])
    assert d_short.value == pytest.approx(0.03) and d_short.dropped == 0
    assert d_long.value == pytest.approx(0.20)
    fits = [k for k in range(20) if len(chatml_prm_prompt(PROBLEM, steps[k:])) <= 4 * 300]
    assert d_long.dropped == min(fits) > 0  # the fewest that fit
    kept = [r for r in srv.on("/pooling") if r.payload["input"] == [chatml_prm_prompt(PROBLEM, steps[d_long.dropped:])]]
    assert kept and kept[-1].payload["input"][0].startswith("<|im_start|>system\n" + QWEN_PRM_SYSTEM)
    assert PROBLEM in kept[-1].payload["input"][0] and steps[d_long.dropped - 1] not in kept[-1].payload["input"][0]

    n = len(srv.on("/pooling"))
    assert prm.score_last_detail([(PROBLEM, steps)]) == [d_long]
    assert len(srv.on("/pooling")) == n + 1  # remembered: no search this time
    (longer,) = prm.score_last_detail([(PROBLEM, steps + ["Step 21: " + "y" * 100 + " [p=0.21]"])])
    assert longer.value == pytest.approx(0.21) and longer.dropped > d_long.dropped
    full = prm.score([(PROBLEM, steps)])[0]
    assert full[: d_long.dropped] == [None] * d_long.dropped
    assert full[d_long.dropped :] == pytest.approx([i / 100 for i in range(d_long.dropped + 1, 21)])


def test_a_step_that_cannot_fit_is_unscored(serve):
    srv = serve(FakeVLLM(model=PRM_MODEL, max_model_len=100, prm=by_step_text))
    prm = VLLMPoolingPRM(srv.url, http=FAST)
    huge = "y" * 1000
    (d_huge, d_ok) = prm.score_last_detail([(PROBLEM, ["a", huge]), (PROBLEM, ["b [p=0.4]"])])
    assert d_huge.value is None and d_huge.dropped == 1
    assert d_ok.value == pytest.approx(0.4)


def test_other_400_errors_are_raised(serve):
    srv = serve(lambda req: {"object": "list", "data": [{"id": "prm"}]} if req.path == "/v1/models" else
                (400, {"error": {"message": "Unsupported task: 'reward'", "type": "BadRequestError", "param": "task",
                                 "code": 400}}))
    prm = VLLMPoolingPRM(srv.url, http=FAST)
    with pytest.raises(EngineError) as ei:
        prm.score([(PROBLEM, STEPS)])
    assert ei.value.status == 400
    assert len(srv.on("/pooling")) == 1


@pytest.mark.parametrize("answer", [{"object": "list", "data": []}, {"object": "list"},
                                    {"data": [{"index": 0, "data": [[0.5, 0.5]]}, {"index": 1, "data": [[0.5, 0.5]]}]}])
def test_unexpected_pooling_answer_raises_engine_error(serve, answer):
    srv = serve(lambda req: {"object": "list", "data": [{"id": "prm"}]} if req.path == "/v1/models" else answer)
    prm = VLLMPoolingPRM(srv.url, http=FAST)
    with pytest.raises(EngineError, match="unexpected answer") as ei:
        prm.score([(PROBLEM, STEPS[:1])])
    assert ei.value.url == srv.url + "/pooling"


def test_nan_probability_from_the_server_is_a_server_error(serve):
    def handler(req):
        if req.path == "/v1/models":
            return {"object": "list", "data": [{"id": "prm"}]}
        return '{"object": "list", "data": [{"index": 0, "object": "pooling", "data": [[NaN, NaN]]}]}'

    srv = serve(handler)
    prm = VLLMPoolingPRM(srv.url, http=FAST)
    with pytest.raises(EngineError, match=r"data\[\]\.data\[\]\[\] = nan") as ei:
        prm.score_last([(PROBLEM, STEPS[:1])])
    assert srv.url in str(ei.value)
