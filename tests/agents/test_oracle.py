"""Tests for trim_rl.agents.oracle: the step-level DP oracle and the query-level oracle."""

from __future__ import annotations

import numpy as np
import pytest

from trim_rl.agents.baselines import RandomStepPolicy
from trim_rl.agents.oracle import (
    OracleStepPolicy, greedy_points, min_cost_to_correct, query_oracle_cost, step_dp,
)
from trim_rl.data.flat import load_flat
from trim_rl.data.trees import write_trees
from trim_rl.evaluation.metrics import point_table, upper_frontier
from trim_rl.evaluation.rollout import rollout, weak_only_records
from trim_rl.evaluation.sweep import sweep

# lambdas of the form 1/(integer + 0.5): token costs are integers, so no tree sits exactly on 1/lam
LAMS = [1.0, 1 / 30.5, 1 / 60.5, 1 / 130.5, 1 / 1000.5, 1e-5 / 1.000001]


@pytest.fixture(scope="module")
def flat(sim_flat):
    return sim_flat("test", 5, limit=10, draws=6)


@pytest.fixture(scope="module")
def cost(flat):
    return min_cost_to_correct(flat)[0]


def _brute_force_min_cost(f):
    """Least strong tokens over every root-to-end path with a correct answer (enumerating the ends)."""
    order = np.argsort(f.depth, kind="stable")
    to_node = np.zeros(f.n_nodes)
    for n in order:
        p = f.parent[n]
        if p >= 0:
            to_node[n] = to_node[p] + (f.strong_tokens[p] if f.parent_action[n] == 1 else 0)
    best = np.full(f.n_trees, np.inf)
    for n in range(f.n_nodes):
        t = f.tree_index[n]
        if f.keep_child[n] == -1 and f.weak_final[n] and f.weak_correct[n] == 1:
            best[t] = min(best[t], to_node[n])
        if f.regen_child[n] == -1 and f.strong_final[n] and f.strong_correct[n] == 1:
            best[t] = min(best[t], to_node[n] + f.strong_tokens[n])
    return best


def test_min_cost_matches_brute_force(flat, cost):
    np.testing.assert_array_equal(cost, _brute_force_min_cost(flat))
    w = flat.weak_only()
    assert (cost[w["correct"]] == 0).all()  # a correct weak-only path is free
    assert np.isfinite(cost).sum() > (cost == 0).sum() > 0


def _header(pid, k, so_tokens=27, so_correct=True):
    return {"schema": "trim_rl.tree/v1", "problem_id": pid, "dataset": "toy", "split": "test",
            "problem": "q", "answer": "a", "level": 1, "models": {"weak": "w", "strong": "s", "prm": "p"},
            "max_interventions": k, "strong_only": {"tokens": so_tokens, "steps": 1, "correct": so_correct}}


def tiny_tree():
    """node 0: keep -> 1, regen (20 tok) -> 2; node 1: weak final wrong, strong (7 tok) final correct;
    node 2: keep -> 3 (budget used); node 3: weak final correct."""
    return {**_header("toy/0", 1), "nodes": [
        {"weak": {"tokens": 10, "prm": 0.9, "final": False}, "strong": {"tokens": 20, "prm": 0.8, "final": False},
         "keep": 1, "regenerate": 2},
        {"weak": {"tokens": 5, "prm": 0.5, "final": True, "correct": False},
         "strong": {"tokens": 7, "prm": 0.6, "final": True, "correct": True}, "keep": None, "regenerate": None},
        {"weak": {"tokens": 11, "prm": 0.7, "final": False}, "keep": 3},
        {"weak": {"tokens": 4, "prm": 0.95, "final": True, "correct": True}, "keep": None},
    ]}


def test_step_dp_by_hand(tmp_path):
    p = tmp_path / "tiny.jsonl"
    write_trees(p, [tiny_tree()])
    f = load_flat(p)
    c, per_node = min_cost_to_correct(f)
    assert c.tolist() == [7.0]
    assert per_node.tolist() == [7.0, 7.0, 0.0, 0.0]
    A, V = step_dp(f, 0.1)  # 1 - 0.1 * 7 = 0.3 > 0: keep, then regenerate
    assert A.tolist()[:2] == [0, 1]
    assert V[0] == pytest.approx(0.3)
    A, V = step_dp(f, 0.2)  # 1 - 1.4 < 0: never pay
    assert A.tolist() == [0, 0, 0, 0] and V[0] == pytest.approx(0.0)
    rec = rollout(OracleStepPolicy(f, 0.1), f, lam=0.1)
    assert rec.correct.tolist() == [True] and rec.strong_tokens.tolist() == [7]
    assert rec.weak_tokens.tolist() == [15] and rec.interventions.tolist() == [1]


@pytest.mark.parametrize("lam", LAMS)
def test_step_oracle_rollout_lies_on_greedy_curve(flat, cost, lam):
    pol = OracleStepPolicy(flat, lam)
    rec = rollout(pol, flat, lam=lam)
    assert pol.env is not None and pol.env.trees is flat  # rollout bound the policy to its env
    expected = (cost == 0) | (cost < 1.0 / lam)
    np.testing.assert_array_equal(rec.correct, expected)
    np.testing.assert_array_equal(rec.strong_tokens, np.where(expected & (cost > 0), cost, 0).astype(np.int64))
    assert (rec.interventions <= flat.max_interventions).all()
    # the point is on the oracle's budget curve: the k cheapest trees bought
    tokens, acc = greedy_points(cost, cost == 0)
    k = int(((cost > 0) & (cost < 1.0 / lam)).sum())
    assert rec.correct.mean() == pytest.approx(acc[k])
    assert rec.strong_tokens.mean() == pytest.approx(tokens[k])
    # and the DP value at each root is the best reachable correct - lam * tokens
    _, V = step_dp(flat, lam)
    np.testing.assert_allclose(V[flat.tree_root], np.maximum(np.where(np.isfinite(cost), 1 - lam * cost, 0), 0),
                               atol=1e-9)


def test_oracle_policy_needs_bind_to_its_trees(flat, tmp_path):
    from trim_rl.envs.vec_env import RoutingVecEnv

    pol = OracleStepPolicy(flat, 1e-3)
    with pytest.raises(RuntimeError):
        pol.predict(np.zeros((flat.n_trees, 6), dtype=np.float32))
    p = tmp_path / "tiny.jsonl"
    write_trees(p, [tiny_tree()])
    with pytest.raises(ValueError):
        pol.bind(RoutingVecEnv(load_flat(p), num_envs=1))


def test_greedy_points_by_hand():
    c = np.array([0.0, 30.0, 10.0, np.inf, 10.0, 5.0])
    base = np.array([True, False, False, False, False, True])  # tree 5 correct at no cost already
    tokens, acc = greedy_points(c, base)
    np.testing.assert_allclose(tokens, np.array([0, 10, 20, 50]) / 6)
    np.testing.assert_allclose(acc, np.array([2, 3, 4, 5]) / 6)


def _cost_acc(points, f):
    correct = np.stack([p.records.correct for p in points])
    strong = np.stack([p.records.strong_tokens for p in points])
    return point_table(correct, strong, f.strong_only_tokens)


def test_oracle_step_sweep_dominates_thr_and_random(flat, cost):
    oracle = sweep("oracle-step", flat)
    buyable = int(((cost > 0) & np.isfinite(cost)).sum())
    assert len(oracle) == buyable + 1  # small file: every point of the exact greedy curve is swept
    oc, oa = _cost_acc(oracle, flat)
    acc_weak = float(weak_only_records(flat).correct.mean())
    # the swept points are exactly the greedy curve
    tokens, acc = greedy_points(cost, cost == 0)
    np.testing.assert_allclose(oa, acc)
    np.testing.assert_allclose(oc, 100 * tokens * flat.n_trees / flat.strong_only_tokens.sum())
    fr = upper_frontier(oc, oa, acc_weak)
    checked = 0
    for name in ("thr", "random"):
        c, a = _cost_acc(sweep(name, flat, seed=0), flat)
        bound = np.interp(c, fr.cost, fr.acc)
        assert (bound >= a - 1e-12).all(), (name, c[bound < a], a[bound < a])
        checked += c.size
    assert checked == 21 + 11
    # and a hand-made random router with another seed
    for p in (0.2, 0.6):
        rec = rollout(RandomStepPolicy(p, seed=9), flat)
        c, a = point_table(rec.correct[None], rec.strong_tokens[None], flat.strong_only_tokens)
        assert np.interp(c, fr.cost, fr.acc)[0] >= a[0] - 1e-12


def test_oracle_step_sweep_points_reproduced_by_dp(flat, cost):
    """A swept point whose setting lambda = 1/(c_k + 0.5) separates c_k from the next cost is what the DP
    policy plays at that lambda."""
    oracle = sweep("oracle-step", flat)
    extra = np.sort(cost[(cost > 0) & np.isfinite(cost)])
    tested = 0
    for k, pt in enumerate(oracle):
        if k == 0:
            assert pt.setting == "free"
            np.testing.assert_array_equal(pt.records.correct, cost == 0)
            continue
        if k < extra.size and extra[k] == extra[k - 1]:
            continue  # a tie: the DP buys both
        if k % 5:
            continue
        rec = rollout(OracleStepPolicy(flat, pt.setting), flat, lam=pt.setting)
        np.testing.assert_array_equal(rec.correct, pt.records.correct)
        np.testing.assert_array_equal(rec.strong_tokens, pt.records.strong_tokens)
        tested += 1
    assert tested >= 3


def test_oracle_frontier_above_thr_frontier_everywhere(flat):
    """TRIM-Thr points never beat the oracle's accuracy at any cost (upper frontier + interp)."""
    oc, oa = _cost_acc(sweep("oracle-step", flat), flat)
    tc, ta = _cost_acc(sweep("thr", flat), flat)
    acc_weak = float(weak_only_records(flat).correct.mean())
    fr_o = upper_frontier(oc, oa, acc_weak)
    fr_t = upper_frontier(tc, ta, acc_weak)
    grid = np.linspace(0, 100, 101)
    assert (np.interp(grid, fr_o.cost, fr_o.acc) >= np.interp(grid, fr_t.cost, fr_t.acc) - 1e-12).all()


# ---------------------------------------------------------------------------------------------
# query-level oracle
# ---------------------------------------------------------------------------------------------
def _chain(pid, weak_tokens, correct, so_tokens, so_correct):
    """A two-step weak chain (max_interventions = 0) with a final answer of the given correctness."""
    return {**_header(pid, 0, so_tokens, so_correct), "nodes": [
        {"weak": {"tokens": weak_tokens, "prm": 0.5, "final": False}, "keep": 1},
        {"weak": {"tokens": 3, "prm": 0.5, "final": True, "correct": correct}, "keep": None},
    ]}


@pytest.fixture
def query_trees(tmp_path):
    p = tmp_path / "q.jsonl.gz"
    write_trees(p, [
        _chain("A", 10, True, 100, True),    # weak right: free
        _chain("B", 20, False, 30, True),    # strong right, 30 tokens
        _chain("C", 30, False, 10, True),    # strong right, 10 tokens
        _chain("D", 40, False, 50, False),   # nobody right
        _chain("E", 50, True, 60, False),    # weak right, strong wrong: free
    ])
    return load_flat(p)


def test_query_oracle_cost_by_hand():
    c = query_oracle_cost(np.array([True, False, False, False]), np.array([True, True, False, True]),
                          np.array([5, 30, 40, 10]))
    assert c.tolist() == [0.0, 30.0, np.inf, 10.0]


def test_query_oracle_points_by_hand(query_trees):
    pts = sweep("oracle-query", query_trees)
    assert [p.setting for p in pts] == ["free", round(1 / 10.5, 8), round(1 / 30.5, 8)]
    correct = [p.records.correct.tolist() for p in pts]
    assert correct == [[True, False, False, False, True],
                       [True, False, True, False, True],
                       [True, True, True, False, True]]
    strong = [p.records.strong_tokens.tolist() for p in pts]
    assert strong == [[0, 0, 0, 0, 0], [0, 0, 10, 0, 0], [0, 30, 10, 0, 0]]
    weak = [p.records.weak_tokens.tolist() for p in pts]
    assert weak == [[13, 23, 33, 43, 53], [13, 23, 0, 43, 53], [13, 0, 0, 43, 53]]
    cost, acc = _cost_acc(pts, query_trees)
    np.testing.assert_allclose(acc, [0.4, 0.6, 0.8])
    np.testing.assert_allclose(cost, [0.0, 100 * 10 / 250, 100 * 40 / 250])


def test_step_oracle_on_query_trees_equals_weak_where_no_regeneration(query_trees):
    # max_interventions = 0 everywhere: the step oracle can only play the weak path
    c, _ = min_cost_to_correct(query_trees)
    assert c.tolist() == [0.0, np.inf, np.inf, np.inf, 0.0]
    pts = sweep("oracle-step", query_trees)
    assert len(pts) == 1 and pts[0].records.correct.tolist() == [True, False, False, False, True]
