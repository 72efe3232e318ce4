"""Hybrid decoding of GSM8K problems against a real llama.cpp server, through the CLI."""

from __future__ import annotations

import json

import numpy as np

from tests.live.conftest import FAST, REPO, live_cli
from trim_rl.agents.registry import load_checkpoint
from trim_rl.data.problems import load_problems
from trim_rl.envs.observations import StepHistory
import pytest

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

AGG = REPO / "checkpoints" / "trim_agg" / "trim_agg_b20"


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_decode_five_gsm8k_problems_with_trim_agg_and_self_verify(llama_url, tmp_path):
    out = tmp_path / "decode.jsonl"
    args = ["decode", "--weak-url", llama_url, "--strong-url", llama_url, "--prm", "self-verify",
            "--policy", AGG, "--problems", "gsm8k", "--limit", 5, "--max-steps", 4, "--out", out, *FAST]
    r = live_cli(*args)
    assert r.returncode == 0, r.stderr
    rows = _lines(out)
    assert len(rows) == 5
    assert {x["problem_id"] for x in rows} == {p.problem_id for p in load_problems("gsm8k")[:5]}
    policy = load_checkpoint(AGG)
    builder = policy.builder()
    for row in rows:
        steps = row["steps"]
        assert 1 <= row["n_steps"] == len(steps) <= 4
        assert row["decisions"] == [int(s["by"] == "strong") for s in steps]
        assert row["strong_tokens"] == sum(s["tokens"] for s in steps if s["by"] == "strong")
        assert row["weak_tokens"] == sum(s["tokens"] for s in steps if s["by"] == "weak") + \
            sum(s["draft"]["tokens"] for s in steps if "draft" in s)
        assert row["finish"] in ("answer", "eos", "max_steps")
        assert isinstance(row["correct"], bool)
        # the router saw exactly the env's features: replay the recorded history through the checkpoint
        hist = StepHistory()
        for s in steps:
            draft = s.get("draft", s)
            assert 0.0 <= draft["prm"] <= 1.0
            obs = builder.from_history(hist, draft["prm"], draft["tokens"])
            action = int(policy.predict(obs[None])[0][0])
            assert action == int(s["by"] == "strong")
            hist.append(s["prm"], s["tokens"], s["by"] == "strong")
    summary = json.loads((tmp_path / "decode.summary.json").read_text())
    assert summary["complete"] and summary["finished"] == 5
    assert summary["accuracy"] == np.mean([x["correct"] for x in rows])
    assert summary["router_ms_per_step_median"] > 0
    # a re-run skips every finished problem
    r2 = live_cli(*args)
    assert r2.returncode == 0, r2.stderr
    assert out.read_text().count("\n") == 5
    assert json.loads((tmp_path / "decode.summary.json").read_text())["steps_per_problem"] == summary["steps_per_problem"]


def test_same_seed_same_decoding(llama_url, tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.jsonl"
        r = live_cli("decode", "--weak-url", llama_url, "--strong-url", llama_url, "--prm", "self-verify",
                     "--policy", "thr:0.5", "--problems", "gsm8k", "--offset", 5, "--limit", 2, "--max-steps", 2,
                     "--seed", 7, "--out", out, *FAST)
        assert r.returncode == 0, r.stderr
        outs.append([(x["problem_id"], [(s["text"], s["by"], s["prm"]) for s in x["steps"]]) for x in _lines(out)])
    assert outs[0] == outs[1]


def test_weak_only_and_strong_only_modes(llama_url, tmp_path):
    for mode in ("weak-only", "strong-only"):
        out = tmp_path / f"{mode}.jsonl"
        r = live_cli("decode", "--weak-url", llama_url, "--strong-url", llama_url, "--policy", mode,
                     "--problems", "gsm8k", "--limit", 2, "--max-steps", 3, "--out", out, *FAST)
        assert r.returncode == 0, r.stderr
        rows = _lines(out)
        by = {s["by"] for x in rows for s in x["steps"]}
        assert by == {mode.split("-")[0]}
        assert all(s["prm"] is None for x in rows for s in x["steps"])


def test_bad_policy_is_a_clear_error(tmp_path):
    r = live_cli("decode", "--weak-url", "http://127.0.0.1:9", "--policy", str(tmp_path), "--out", tmp_path / "o.jsonl")
    assert r.returncode == 2
    assert "policy.json" in r.stderr


def test_decode_with_trim_pomdp_and_seq_checkpoints(llama_url, tmp_path):
    for name in ("trim_pomdp/trim_pomdp_b20", "trim_seq/trim_seq_b20"):
        out = tmp_path / f"{name.replace('/', '_')}.jsonl"
        r = live_cli("decode", "--weak-url", llama_url, "--strong-url", llama_url, "--prm", "self-verify",
                     "--policy", REPO / "checkpoints" / name, "--problems", "gsm8k", "--offset", 7, "--limit", 1,
                     "--max-steps", 2, "--out", out, *FAST)
        assert r.returncode == 0, r.stderr
        (row,) = _lines(out)
        assert row["policy"].endswith(name) and 1 <= row["n_steps"] <= 2
        assert all(0.0 <= (s.get("draft") or s)["prm"] <= 1.0 for s in row["steps"])
