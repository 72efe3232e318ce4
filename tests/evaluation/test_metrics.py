"""Tests for trim_rl.evaluation.metrics."""

import json
import math

import numpy as np
import pytest

from trim_rl.evaluation.metrics import (
    apgr, cpt, dibc, json_safe, pgr, point_table, policy_metrics, upper_frontier,
)

W, S = 0.5, 0.9  # acc_weak, acc_strong


def test_pgr_scalar_and_array():
    assert pgr(0.7, W, S) == pytest.approx(0.5)
    assert isinstance(pgr(0.7, W, S), float)
    np.testing.assert_allclose(pgr(np.array([0.5, 0.9, 1.0]), W, S), [0.0, 1.0, 1.25])


def test_frontier_drops_dominated_and_adds_anchor():
    cost = np.array([50, 20, 60, 50, 100, 10])
    acc = np.array([0.8, 0.6, 0.7, 0.75, 0.9, 0.45])  # (60,.7), (50,.75), (10,.45) dominated
    fr = upper_frontier(cost, acc, W)
    np.testing.assert_allclose(fr.cost, [0, 20, 50, 100])
    np.testing.assert_allclose(fr.acc, [0.5, 0.6, 0.8, 0.9])


def test_frontier_equal_accuracy_not_kept():
    fr = upper_frontier(np.array([30, 40]), np.array([0.5, 0.7]), W)  # (30, .5) ties the anchor
    np.testing.assert_allclose(fr.cost, [0, 40])


def test_cpt_hand_computed_interpolation():
    fr = upper_frontier(np.array([20, 50, 100]), np.array([0.6, 0.8, 0.9]), W)
    # PGR along the frontier: 0, 0.25, 0.75, 1.0 at costs 0, 20, 50, 100.
    assert cpt(fr, W, S, 50) == pytest.approx(35.0)   # 20 + (0.25/0.5)*30
    assert cpt(fr, W, S, 80) == pytest.approx(60.0)   # 50 + (0.05/0.25)*50
    assert cpt(fr, W, S, 95) == pytest.approx(90.0)   # 50 + (0.20/0.25)*50
    assert cpt(fr, W, S, 25) == pytest.approx(20.0)   # exactly at a point
    assert cpt(fr, W, S, 100) == pytest.approx(100.0)
    assert cpt(fr, W, S, 0) == 0.0                    # anchor reaches it


def test_cpt_inf_when_never_reached():
    fr = upper_frontier(np.array([20, 50]), np.array([0.6, 0.8]), W)  # max PGR 0.75
    assert cpt(fr, W, S, 80) == math.inf
    assert cpt(fr, W, S, 50) == pytest.approx(35.0)


def test_dibc_random_line_is_zero_and_above_is_positive():
    costs = np.array([25.0, 50.0, 100.0])
    on_line = W + (S - W) * costs / 100
    assert dibc(upper_frontier(costs, on_line, W), W, S) == pytest.approx(0.0, abs=1e-12)
    # (50, S): IBC = 0.4/50 = 2 * IBC_random -> dIBC 1.
    assert dibc(upper_frontier(np.array([50.0]), np.array([S]), W), W, S) == pytest.approx(1.0)
    # Two points: (50, S) -> 1 and (100, S) dominated, so still 1; (20, 0.7) -> (0.01-0.004)/0.004.
    fr = upper_frontier(np.array([20.0, 50.0, 100.0]), np.array([0.7, S, S]), W)
    assert dibc(fr, W, S) == pytest.approx((1.5 + 1.0) / 2)


def test_dibc_nan_without_costly_points():
    fr = upper_frontier(np.array([]), np.array([]), W)
    assert math.isnan(dibc(fr, W, S))


def test_apgr_jump_and_diagonal():
    jump = upper_frontier(np.array([1e-9]), np.array([S]), W)
    assert apgr(jump, W, S) == pytest.approx(1.0, abs=1e-9)
    diag = upper_frontier(np.array([100.0]), np.array([S]), W)
    assert apgr(diag, W, S) == pytest.approx(0.5)


def test_apgr_flat_extension_and_cut_at_100():
    half = upper_frontier(np.array([50.0]), np.array([S]), W)
    assert apgr(half, W, S) == pytest.approx(0.75)  # 0.5*50*1 + 50*1 over 100
    beyond = upper_frontier(np.array([200.0]), np.array([S]), W)
    assert apgr(beyond, W, S) == pytest.approx(0.25)  # PGR 0.5 at 100 by interpolation
    # A point beyond 100 that does not bound the last segment is ignored.
    fr = upper_frontier(np.array([100.0, 300.0]), np.array([0.7, S]), W)
    assert apgr(fr, W, S) == pytest.approx(0.25)  # diagonal to PGR 0.5 at 100


def test_point_table():
    correct = np.array([[1, 0, 1, 1], [0, 0, 1, 0]], dtype=bool)
    tokens = np.array([[10, 0, 30, 0], [0, 0, 0, 0]])
    cost, acc = point_table(correct, tokens, np.array([10, 20, 30, 40]))
    np.testing.assert_allclose(cost, [40.0, 0.0])
    np.testing.assert_allclose(acc, [0.75, 0.25])


def _synthetic(n=600, n_points=6, seed=1):
    rng = np.random.default_rng(seed)
    diff = rng.random(n)
    weak = rng.random(n) > diff + 0.1
    strong = rng.random(n) > diff - 0.3
    so_tok = rng.integers(100, 1000, n)
    fracs = np.linspace(0.0, 1.0, n_points)
    route = diff[None, :] > 1 - fracs[:, None]  # route the hardest problems to strong
    correct = np.where(route, strong[None], weak[None])
    tokens = np.where(route, so_tok[None], 0)
    return correct, tokens, weak, strong, so_tok, fracs.tolist()


def test_policy_metrics_intervals_contain_estimates_and_seeded():
    correct, tokens, weak, strong, so_tok, settings = _synthetic()
    out = policy_metrics(correct, tokens, weak, strong, so_tok, settings, n_boot=300, seed=0)
    iv = out["intervals"]
    for k in ("50", "80"):
        lo, hi = iv["cpt"][k]
        assert math.isfinite(out["cpt"][k]) and lo <= out["cpt"][k] <= hi
    for name in ("dibc", "apgr"):
        lo, hi = iv[name]
        assert lo <= out[name] <= hi and lo < hi
    for p, (lo, hi) in zip(out["points"], iv["accuracy"]):
        assert lo <= p["accuracy"] <= hi
    assert 0.0 <= iv["finite_frac"]["apgr"] <= 1.0
    # Point estimates agree with the direct functions.
    cost, acc = point_table(correct, tokens, so_tok)
    fr = upper_frontier(cost, acc, weak.mean())
    assert out["apgr"] == pytest.approx(apgr(fr, weak.mean(), strong.mean()))
    np.testing.assert_allclose(out["frontier"]["cost_pct"], fr.cost)
    assert out["n_problems"] == 600 and out["n_boot"] == 300
    # Deterministic for a seed, different for another.
    again = policy_metrics(correct, tokens, weak, strong, so_tok, settings, n_boot=300, seed=0)
    other = policy_metrics(correct, tokens, weak, strong, so_tok, settings, n_boot=300, seed=1)
    assert again["intervals"] == iv
    assert other["intervals"]["apgr"] != iv["apgr"]
    assert other["apgr"] == out["apgr"]


def test_policy_metrics_json_safe_with_inf():
    correct, tokens, weak, strong, so_tok, settings = _synthetic()
    # Keep only cheap points so high CPT levels are never reached.
    out = policy_metrics(correct[:2], tokens[:2], weak, strong, so_tok, settings[:2],
                         n_boot=50, seed=0, cpt_levels=(50, 99.5))
    assert out["cpt"]["99.5"] == math.inf
    assert out["intervals"]["finite_frac"]["cpt"]["99.5"] < 1.0
    with pytest.raises(ValueError):
        json.dumps(out, allow_nan=False)
    safe = json_safe(out)
    text = json.dumps(safe, allow_nan=False)
    assert json.loads(text)["cpt"]["99.5"] is None
    assert json_safe({"a": np.float64("nan"), "b": np.int64(3), 1: (np.inf, 2.0)}) == \
        {"a": None, "b": 3, "1": [None, 2.0]}


def test_policy_metrics_rejects_bad_shapes():
    correct, tokens, weak, strong, so_tok, settings = _synthetic()
    with pytest.raises(ValueError):
        policy_metrics(correct, tokens, weak, strong, so_tok, settings[:-1], n_boot=10)
    with pytest.raises(ValueError):
        policy_metrics(correct, tokens[:, :-1], weak, strong, so_tok, settings, n_boot=10)
