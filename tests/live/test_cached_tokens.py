"""Cached prompt tokens: read from vLLM's and llama-server's answers, summed per request for the strong
model, and, against a real llama-server, equal to what the server itself counts."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from trim_rl.live.engines import cached_tokens
from trim_rl.live.http import EngineError


def test_each_server_s_form_is_read():
    vllm = {"usage": {"prompt_tokens": 120, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 96}}}
    assert cached_tokens(vllm, vllm["usage"], 120, "vllm") == 96
    llama = {"usage": {"prompt_tokens": 101}, "timings": {"prompt_n": 1, "predicted_n": 4}}
    assert cached_tokens(llama, llama["usage"], 101, "llama") == 100
    plain = {"usage": {"prompt_tokens": 50}}
    assert cached_tokens(plain, plain["usage"], 50, "other") is None
    bad = {"usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}}}
    with pytest.raises(EngineError, match="cached_tokens"):
        cached_tokens(bad, bad["usage"], 10, "http://x/v1/completions")


def _prompt_tokens_computed(url: str) -> float:
    """llama-server's own count of the prompt tokens it computed (its --metrics)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return float(re.search(r"^llamacpp:prompt_tokens_total (\S+)$", text, re.M).group(1))


@pytest.mark.slow
def test_decode_records_what_llama_server_took_from_its_cache(new_server, tmp_path):
    from tests.live.conftest import FAST, live_cli

    server = new_server(parallel=2, n_ctx=2048)
    before = _prompt_tokens_computed(server.url)
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"id": i, "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                                for i in range(3)))
    out = tmp_path / "strong.jsonl"
    r = live_cli("decode", "--weak-url", server.url, "--strong-url", server.url, "--policy", "strong-only",
                 "--problems", problems, "--max-steps", "4", "--out", out, *FAST)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    steps = [s for row in rows for s in row["steps"]]
    assert steps and all(0 <= s["cached_tokens"] <= s["prompt_tokens"] for s in steps)
    # a step's prompt is the last one's plus a step: the slot's cache holds most of it
    assert any(s["cached_tokens"] > 0 for row in rows for s in row["steps"][1:])
    for row in rows:
        assert row["strong_cached_tokens"] == sum(s["cached_tokens"] for s in row["steps"])
        assert row["strong_prompt_tokens"] == sum(s["prompt_tokens"] for s in row["steps"])
    computed = sum(s["prompt_tokens"] - s["cached_tokens"] for s in steps)
    assert _prompt_tokens_computed(server.url) - before == computed
