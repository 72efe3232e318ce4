"""The off-policy estimator (trim_rl/evaluation/offpolicy.py): on logs of a known epsilon-greedy behaviour it
recovers other policies' accuracy and strong tokens measured directly, within its intervals; its log
reader refuses bad lines by name; ``evaluate.py --logged`` prints and writes the estimates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trim_rl.agents.registry import load_policy
from trim_rl.envs.vec_env import RoutingVecEnv
from trim_rl.evaluation.offpolicy import LOG_KIND, LogError, collect, evaluate_logged, read_log
from tests.conftest import REPO

TREES = "sim:math500:test"
CKPTS = REPO / "checkpoints"


def _direct(policy, episodes: int = 20_000) -> tuple[float, float]:
    """The policy's accuracy and strong tokens a problem, measured by playing it."""
    env = RoutingVecEnv(TREES, num_envs=256, lam=1e-3)
    env.seed(123)
    obs, out = env.reset(), []
    while len(out) < episodes:
        a, _ = policy.predict(obs, deterministic=True, action_masks=env.action_masks())
        obs, _, done, infos = env.step(a)
        out += [i for i, d in zip(infos, done) if d]
    return float(np.mean([o["correct"] for o in out])), float(np.mean([o["strong_tokens"] for o in out]))


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("ope") / "rollouts.jsonl"
    env = RoutingVecEnv(TREES, num_envs=64, lam=1e-3)
    env.seed(0)
    return collect(env, load_policy("thr:0.5"), 2000, path, explore=0.3, seed=0)


def test_log_holds_decisions_with_behaviour_probabilities(log):
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == 2000 and all(r["kind"] == LOG_KIND for r in rows)
    d = rows[0]["decisions"][0]
    assert len(d["obs"]) == 6 and d["prob"] in (pytest.approx(0.85), pytest.approx(0.15), pytest.approx(1.0))
    assert all(sum(x["strong_tokens"] for x in r["decisions"]) == r["strong_tokens"] for r in rows)


@pytest.mark.parametrize("target", ["thr:0.3", "thr:0.7"])
def test_estimates_recover_the_directly_measured_values(log, target):
    policy = load_policy(target)
    acc, tok = _direct(policy)
    res = evaluate_logged(log, {target: policy})["policies"][target]
    assert 50 < res["ess"] < 2000 and res["matched"] < 2000
    for est in ("dr", "is"):
        a, s = res["accuracy"][est], res["strong_tokens"][est]
        assert a["low"] <= acc <= a["high"], (est, a, acc)
        assert s["low"] <= tok <= s["high"], (est, s, tok)
    # the doubly robust interval is the tighter one
    assert res["accuracy"]["dr"]["se"] < res["accuracy"]["is"]["se"]
    assert res["strong_tokens"]["dr"]["se"] < res["strong_tokens"]["is"]["se"]


def test_a_policy_far_from_the_behaviour_has_a_small_effective_sample(log):
    res = evaluate_logged(log, {"w": load_policy("always-weak"), "b": load_policy("thr:0.5")})["policies"]
    assert res["w"]["ess"] < res["b"]["ess"] / 10


def test_bad_logs_are_refused_by_line(tmp_path, log):
    good = log.read_text().splitlines()[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n" + json.dumps({"kind": "other"}) + "\n")
    with pytest.raises(LogError, match=r"bad.jsonl:2: not a decision log line"):
        read_log(bad)
    row = json.loads(good)
    row["decisions"][0]["prob"] = 0.0
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(LogError, match=r"bad.jsonl:1: decisions: prob"):
        read_log(bad)
    cut = tmp_path / "cut.jsonl"
    cut.write_text(good + "\n" + good[:50])  # a crash cut the last line: the episodes before it stand
    eps, counts = read_log(cut)
    assert len(eps) == 1
    with pytest.raises(LogError, match="observations of shape"):
        evaluate_logged(log, {"seq": load_policy(CKPTS / "trim_seq" / "trim_seq_b16")})


def test_evaluate_logged_cli(log, tmp_path, capsys):
    from trim_rl.cli.evaluate import main

    assert main(["--logged", str(log), "--checkpoints", "thr:0.3", str(CKPTS / "trim_agg" / "trim_agg_b16"),
                 "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "thr:0.3" in out and "trim_agg_b16" in out and "ESS" in out
    data = json.loads((tmp_path / "rep" / "offpolicy.json").read_text())
    assert set(data["policies"]) == {"thr:0.3", "trim_agg_b16"}
    assert main(["--logged", str(tmp_path / "nope.jsonl"), "--checkpoints", "thr:0.3"]) == 2
    assert "--logged" in capsys.readouterr().err
