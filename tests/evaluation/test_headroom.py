"""Tests for trim_rl.evaluation.headroom: exact tree values of a policy and policy iteration on agg."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from trim_rl.agents.baselines import ThresholdPolicy
from trim_rl.data.flat import ABSENT, load_flat
from trim_rl.evaluation.headroom import (AdvantagePolicy, agg_policy_iteration, fit_policies, node_features, policy_values,
                                         reach_weights)
from trim_rl.evaluation.rollout import rollout
from trim_rl.sim.generate import generate_file


@pytest.fixture(scope="module")
def trees_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("headroom") / "trees.jsonl.gz"
    generate_file("math500", "train", 4, p, limit=60, draws=4)
    return p


@pytest.fixture(scope="module")
def flat(trees_file):
    return load_flat(trees_file)


@pytest.mark.parametrize("k", [0.0, 0.2, 0.5, 1.0])
def test_exact_values_match_a_rollout(flat, k):
    lam = 1.5e-3
    pv = policy_values(flat, flat.weak_prm < k, lam)
    rec = rollout(ThresholdPolicy(k), flat)
    assert pv.accuracy == pytest.approx(rec.correct.mean(), abs=1e-12)
    assert pv.cost_pct == pytest.approx(100 * rec.strong_tokens.sum() / flat.strong_only_tokens.sum(), abs=1e-9)
    # the root's value is the chosen action's Q, and it equals correct - lam * strong tokens per tree
    roots = flat.tree_root
    chosen = np.where((flat.weak_prm[roots] < k) & (flat.regen_child[roots] != ABSENT), pv.q_regen[roots],
                      pv.q_keep[roots])
    np.testing.assert_allclose(chosen, rec.correct - lam * rec.strong_tokens, atol=1e-9)


def test_reach_weights_follow_the_policy(flat):
    regen = flat.weak_prm < 0.3
    w = reach_weights(flat, regen, explore=0.0)
    assert set(np.unique(w)) <= {0.0, 1.0}
    rec = rollout(ThresholdPolicy(0.3), flat)
    assert w.sum() == rec.steps.sum()  # one reached node per decision
    w2 = reach_weights(flat, regen, explore=0.2)
    depth0 = flat.depth == 0
    assert w2[depth0].sum() == pytest.approx(flat.n_trees)
    assert (w2 > 0).sum() > (w > 0).sum()


def test_policy_iteration_improves_on_its_start(flat):
    lam = 1.5e-3
    start = policy_values(flat, flat.weak_prm < 0.3, lam)
    model = agg_policy_iteration(flat, lam, iters=3, start_threshold=0.3, min_leaf=20)
    pv = policy_values(flat, model.predict(node_features(flat)) > 0, lam)

    def objective(v):
        return v.accuracy - lam * v.cost_pct / 100 * flat.strong_only_tokens.mean()

    assert objective(pv) > objective(start)


def test_advantage_policy_plays_in_the_env_as_the_exact_values_say(flat):
    # the evaluator rolls the fitted model over the env's agg observation; the tree DP reads the same
    # features off the nodes: both must take the same decisions
    lam = 1.5e-3
    model = agg_policy_iteration(flat, lam, iters=2, min_leaf=20)
    regen = model.predict(node_features(flat)) > 0
    assert 0 < regen[flat.regen_allowed].mean() < 1  # a policy that both keeps and regenerates
    pv = policy_values(flat, regen, lam)
    rec = rollout(AdvantagePolicy(model, lam), flat)
    assert rec.correct.mean() == pytest.approx(pv.accuracy, abs=1e-12)
    assert 100 * rec.strong_tokens.sum() / flat.strong_only_tokens.sum() == pytest.approx(pv.cost_pct, abs=1e-9)


def test_fitted_policies_are_one_frontier_for_the_evaluator(flat):
    from trim_rl.evaluation.evaluation import evaluate_policies

    pols = fit_policies(flat, [1.0e-3, 3.0e-3], iters=1, progress=False, family="ceiling")
    assert [p.lam for p in pols] == [1.0e-3, 3.0e-3]
    res = evaluate_policies(flat, ["thr"], n_boot=20, progress=False, checkpoints=pols)
    points = res["policies"]["ceiling"]["points"]
    assert len(points) == 2
    assert points[0]["cost_pct"] != points[1]["cost_pct"]  # a cheaper price buys more regenerations


@pytest.mark.slow
def test_cli_writes_json(trees_file, tmp_path):
    out = tmp_path / "sub" / "headroom.json"
    r = subprocess.run([sys.executable, "-m", "trim_rl.evaluation.headroom", "--train", str(trees_file), "--trees",
                        str(trees_file), "--lams", "1e-3", "2e-3", "--iters", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "CPT(80%)" in r.stdout
    # strict JSON: a CPT the two prices never reach is null, not Infinity
    res = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in {out.name}"))
    assert [p["lam"] for p in res["policy_iteration"]] == [1e-3, 2e-3]
    assert len(res["threshold"]) == 21 and res["threshold"][0]["cost_pct"] == 0.0
    assert res["threshold"][0]["accuracy"] == pytest.approx(res["acc_weak"])  # k = 0 is always-weak
    r = subprocess.run([sys.executable, "-m", "trim_rl.evaluation.headroom", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and {"--train", "--trees", "--iters", "--lams", "--out"} <= set(r.stdout.split())
