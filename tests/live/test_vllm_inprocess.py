"""In-process vLLM engine and PRM (``pip install .[live]`` on a GPU machine); skipped where vllm is absent.

Models come from the local Hugging Face cache: TRIM_RL_VLLM_MODEL (default Qwen/Qwen2.5-0.5B-Instruct)
and TRIM_RL_VLLM_PRM (default Qwen/Qwen2.5-Math-PRM-7B; the PRM test is skipped unless it is set).
The PRM goes through ``LLM.encode(prompts, pooling_task="token_classify")`` on vLLM >= 0.24
(``entrypoints/pooling/offline.py``: a task is required and ``LLM.reward`` is gone), ``LLM.reward``
before.
"""

from __future__ import annotations

import os

import pytest

vllm = pytest.importorskip("vllm")

from trim_rl.live.engines import Sampling, StepRequest, VLLMEngine  # noqa: E402
from trim_rl.live.prm import VLLMInProcessPRM  # noqa: E402

PROBLEM = "Tom has 3 boxes with 4 apples each. How many apples does he have?"


def test_vllm_engine_generates_one_step_per_request():
    eng = VLLMEngine(os.environ.get("TRIM_RL_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct"), Sampling(max_tokens=48),
                     gpu_memory_utilization=0.3, max_model_len=2048)
    out = eng.generate([StepRequest(PROBLEM, (), 0), StepRequest(PROBLEM, ("3 boxes of 4 apples.",), 1)])
    assert len(out) == 2
    assert all(r.tokens > 0 and r.finish_reason in ("stop", "eos", "length") and "\n\n" not in r.text for r in out)
    assert eng.generate([StepRequest(PROBLEM, (), 0)])[0] == out[0]  # greedy and seeded
    long = eng.generate([StepRequest(PROBLEM, tuple(["a much longer step " * 20] * 40), 2)])
    assert long[0].finish_reason == "context"  # past max_model_len: nothing generated, the solution ends


@pytest.mark.skipif("TRIM_RL_VLLM_PRM" not in os.environ, reason="set TRIM_RL_VLLM_PRM to a cached PRM")
def test_vllm_prm_scores_each_step_and_shortens_long_inputs():
    prm = VLLMInProcessPRM(os.environ["TRIM_RL_VLLM_PRM"], gpu_memory_utilization=0.5, max_model_len=1024)
    good = ["3 boxes with 4 apples each hold 3 * 4 = 12 apples.", "The answer is \\boxed{12}."]
    bad = ["3 boxes with 4 apples each hold 3 + 4 = 7 apples.", "The answer is \\boxed{7}."]
    s_good, s_bad = prm.score([(PROBLEM, good), (PROBLEM, bad)])
    assert len(s_good) == len(s_bad) == 2
    assert all(0.0 <= s <= 1.0 for s in s_good + s_bad)
    assert s_good[0] > s_bad[0]
    filler = [f"Step {i}: we note that 3 * 4 = 12 once more, as before, with nothing new." for i in range(60)]
    (detail,) = prm.score_last_detail([(PROBLEM, filler + good)])
    assert detail.dropped > 0 and 0.0 <= detail.value <= 1.0
