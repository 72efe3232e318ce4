"""Engines, the self-verification scorer and the live benchmark against a real llama.cpp server
(``llama-server`` with several slots)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.live.conftest import REPO, live_cli
from trim_rl.live.engines import OpenAICompatibleEngine, Sampling, StepRequest
from trim_rl.live.prm import SelfVerifyScorer
from trim_rl.live.prompts import step_prompt

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

PROBLEM = "Tom has 3 boxes with 4 apples each. How many apples does he have?"


def test_engine_generates_steps_and_continues_a_prefix(llama_url):
    eng = OpenAICompatibleEngine(llama_url, sampling=Sampling(max_tokens=24, temperature=0.0))
    first = eng.generate([StepRequest(PROBLEM), StepRequest("What is 7 + 5?")])
    assert len(first) == 2
    for r in first:
        assert r.tokens > 0 and r.finish_reason in ("stop", "eos", "length")
        assert not r.text.endswith("\n") and "\n\n" not in r.text
    assert eng.generate([StepRequest(PROBLEM)])[0] == first[0]  # greedy: same step again
    assert eng.prompts_per_request == 1  # llama-server: one prompt per request unless asked
    nxt = eng.generate([StepRequest(PROBLEM, (first[0].text,))])[0]
    assert nxt.tokens > 0


def test_self_verify_reads_yes_no_logprobs(llama_url):
    sv = SelfVerifyScorer(llama_url)
    items = [(PROBLEM, ["3 boxes times 4 apples is 12 apples."]),
             (PROBLEM, ["3 boxes times 4 apples is 12 apples.", "So the answer is \\boxed{12}."]),
             (PROBLEM, ["The apples are purple, so the answer is \\boxed{99}."])]
    last = sv.score_last(items)
    assert all(0.0 <= s <= 1.0 for s in last)
    assert any(s != 0.5 for s in last)  # yes/no were among the top logprobs
    full = sv.score(items)
    assert [len(s) for s in full] == [1, 2, 1]
    assert [s[-1] for s in full] == last


def test_several_prompts_per_request_to_llama_server(llama_url):
    """llama-server answers several prompts with an array of completion objects: each step gets its
    own prompt and completion counts, as one request per prompt gives them."""
    import httpx

    eng = OpenAICompatibleEngine(llama_url, sampling=Sampling(max_tokens=12, temperature=0.0), prompts_per_request=3)
    reqs = [StepRequest(PROBLEM), StepRequest("What is 7 + 5?"), StepRequest(PROBLEM, ("3 times 4 is 12.",)),
            StepRequest("Name a prime number larger than 10 and explain why it is prime.")]
    out = eng.generate(reqs)
    assert eng.batch_error is None and eng.prompts_per_request == 3
    for req, r in zip(reqs, out):
        prompt = step_prompt(eng.template, req.problem, req.steps)
        ids = httpx.post(llama_url + "/tokenize", json={"content": prompt, "add_special": True}).json()["tokens"]
        assert r.prompt_tokens == len(ids)  # this prompt's count, not another's nor the sum
        assert 0 < r.tokens <= 12 and r.finish_reason in ("stop", "eos", "length")
    assert len({r.prompt_tokens for r in out}) == 4


def test_self_verify_with_several_questions_per_request(llama_url):
    items = [(PROBLEM, ["3 boxes times 4 apples is 12 apples."]),
             (PROBLEM, ["3 boxes times 4 apples is 12 apples.", "So the answer is \\boxed{12}."]),
             (PROBLEM, ["The apples are purple, so the answer is \\boxed{99}."])]
    one = SelfVerifyScorer(llama_url).score_last(items)
    batched = SelfVerifyScorer(llama_url, prompts_per_request=3)
    assert batched.score_last(items) == pytest.approx(one, abs=0.02)  # same questions, same order
    assert batched.batch_error is None


def test_bench_live_prints_decision_times_and_throughput_ratios(llama_url):
    r = subprocess.run([sys.executable, "-m", "trim_rl.bench", "live", "--steps", "50", "--repeats", "1", "--url",
                        llama_url, "--limit", "2", "--max-steps", "1", "--max-tokens", "8", "--verify-prompt",
                        "continued"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "self-verify question: continued:" in r.stdout
    # the backend alone, all at once vs one at a time: the ceiling of the ratios below
    (ceiling,) = re.findall(r"2 completions of 8 tokens .* ratio all at once / one at a time: ([\d.]+)", r.stdout)
    assert float(ceiling) > 0
    for name in ("TRIM-Thr", "TRIM-Agg", "TRIM-POMDP", "TRIM-Seq", "hybrid", "weak-only", "strong-only",
                 "ratio hybrid/weak-only"):
        assert name in r.stdout
    for what in ("decode", "collect"):  # one at a time vs old vs new throughput defaults, side by side
        (line,) = [x for x in r.stdout.splitlines() if x.strip().startswith(what + " ") and "ratio" in x]
        old, new, ratio, one, ratio_one = (float(v) for v in re.findall(
            r"old ([\d.]+)\s+new ([\d.]+)\s+ratio new/old: ([\d.]+)\s+one at a time ([\d.]+)\s+ratio new/one: ([\d.]+)",
            line)[0])
        assert old > 0 and new > 0 and one > 0
        assert ratio == pytest.approx(new / old, abs=0.01) and ratio_one == pytest.approx(new / one, abs=0.01)
        for config in ("one", "old", "new"):  # llama-server's own counters of each run
            (row,) = [x for x in r.stdout.splitlines() if x.split()[:2] == [what, config] and "decode calls" in x]
            tokens, calls, slots = (float(v) for v in re.search(
                r"generated (\d+) tok .* (\d+) decode calls of ([\d.]+) busy slots", row).groups())
            assert tokens > 0 and calls > 0 and slots >= 1.0


def test_cli_help_explains_every_command():
    for cmd in ("decode", "collect", "serve-local"):
        r = live_cli(cmd, "--help")
        assert r.returncode == 0 and "usage" in r.stdout
    r = live_cli("decode", "--help")
    for flag in ("--weak-url", "--strong-url", "--prm-url", "--prm", "--policy", "--problems", "--limit", "--out",
                 "--vllm-arg", "--wait-ready", "--top-k", "--repetition-penalty", "--prompts-per-request"):
        assert flag in r.stdout
    r = live_cli("collect", "--help")
    for flag in ("--shard", "--estimate", "--chunk", "-K"):
        assert flag in r.stdout
    assert "--parallel" in live_cli("serve-local", "--help").stdout


def test_serve_local_starts_one_llama_server_with_its_slots_and_stops_on_sigterm(tmp_path):
    import signal
    import time

    import httpx

    from tests.live.conftest import _need_live

    _need_live()
    log = tmp_path / "serve-local.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "trim_rl.live", "serve-local", "--port", "0", "--parallel", "2",
                                 "--n-threads", "1", "--n-ctx", "1024"], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (m := re.search(r"with 2 slots at (http://127\.0\.0\.1:\d+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        url = m.group(1)
        slots = httpx.get(url + "/slots", timeout=10)
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        assert slots.status_code != 200 or len(slots.json()) == 2  # /slots may be off; where on, two slots
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 143 and log.read_text().strip().splitlines()[-1] == "terminated: llama-server stopped"
