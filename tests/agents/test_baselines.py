"""Tests for trim_rl.agents.baselines (TRIM-Thr, always-weak/strong, random step router)."""

from __future__ import annotations

import numpy as np
import pytest

from trim_rl.agents.base import Policy, apply_mask, current_prm
from trim_rl.agents.baselines import ConstantPolicy, RandomStepPolicy, ThresholdPolicy
from trim_rl.data.flat import ABSENT
from trim_rl.data.schema import MAX_STEPS
from trim_rl.envs.observations import AggObservation, SeqObservation, StepHistory
from trim_rl.evaluation.rollout import rollout


@pytest.fixture(scope="module")
def flat(sim_flat):
    return sim_flat("test", 4, limit=10, draws=3)


def _agg_batch(prms):
    b = AggObservation()
    h = StepHistory()
    return np.stack([b.from_history(h, p, 50) for p in prms])


def _seq_batch(prms, depths):
    b = SeqObservation()
    out = []
    for p, d in zip(prms, depths):
        h = StepHistory()
        for j in range(d):
            h.append(0.05 if j % 2 else 0.99, 40, bool(j % 3 == 0))  # history scores must not matter
        out.append(b.from_history(h, p, 50))
    return np.stack(out)


PRMS = [0.0, 0.2, 0.49, 0.5, 0.51, 0.9, 1.0]


def test_threshold_on_agg_observations():
    pol = ThresholdPolicy(0.5)
    a, state = pol.predict(_agg_batch(PRMS), state="s")
    assert state == "s"
    assert a.tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert a.dtype == np.int64
    # k = 0 never regenerates, k = 1 regenerates everything below 1
    assert ThresholdPolicy(0.0).predict(_agg_batch(PRMS))[0].tolist() == [0] * 7
    assert ThresholdPolicy(1.0).predict(_agg_batch(PRMS))[0].tolist() == [1] * 6 + [0]


def test_threshold_on_seq_observations():
    pol = ThresholdPolicy(0.5)
    depths = [0, 1, 2, 5, 10, 20, MAX_STEPS - 1]
    a, _ = pol.predict(_seq_batch(PRMS, depths))
    assert a.tolist() == [1, 1, 1, 0, 0, 0, 0]
    # one unbatched observation of either kind
    assert pol.predict(_seq_batch([0.3], [4])[0])[0].tolist() == [1]
    assert pol.predict(_agg_batch([0.7])[0])[0].tolist() == [0]
    np.testing.assert_allclose(current_prm(_seq_batch(PRMS, depths)), PRMS, rtol=1e-6)
    np.testing.assert_allclose(current_prm(_agg_batch(PRMS)), PRMS, rtol=1e-6)


def test_threshold_budget_conditioned_agg():
    b = AggObservation(budget_conditioned=True)
    obs = np.stack([b.from_history(StepHistory(), p, 50, lam=1e-3) for p in PRMS])
    assert ThresholdPolicy(0.5).predict(obs)[0].tolist() == [1, 1, 1, 0, 0, 0, 0]


def test_masks_respected():
    obs = _agg_batch([0.1, 0.1, 0.9, 0.9])
    masks = np.array([[True, True], [True, False], [True, True], [True, False]])
    assert ThresholdPolicy(0.5).predict(obs, action_masks=masks)[0].tolist() == [1, 0, 0, 0]
    assert ConstantPolicy(1).predict(obs, action_masks=masks)[0].tolist() == [1, 0, 1, 0]
    assert ConstantPolicy(0).predict(obs, action_masks=masks)[0].tolist() == [0, 0, 0, 0]
    r = RandomStepPolicy(1.0).predict(obs, action_masks=masks)[0]
    assert r.tolist() == [1, 0, 1, 0]
    assert apply_mask(np.array([1, 1]), np.array([True, False, True, True])).tolist() == [0, 1]


@pytest.mark.parametrize("k", [-0.01, 1.01, 2.0, float("nan")])
def test_invalid_threshold_raises(k):
    with pytest.raises(ValueError):
        ThresholdPolicy(k)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_invalid_probability_raises(p):
    with pytest.raises(ValueError):
        RandomStepPolicy(p)


def test_policies_follow_protocol():
    for pol in (ThresholdPolicy(0.3), ConstantPolicy(0), RandomStepPolicy(0.2)):
        assert isinstance(pol, Policy)
        assert pol.obs == "agg"


def test_random_policy_rate_and_seed():
    obs = _agg_batch([0.5] * 7)
    a = RandomStepPolicy(0.3, seed=1).predict(obs)[0]
    many = RandomStepPolicy(0.3, seed=1)
    draws = np.concatenate([many.predict(obs)[0] for _ in range(2000)])
    assert abs(draws.mean() - 0.3) < 0.02
    again = RandomStepPolicy(0.3, seed=1)
    np.testing.assert_array_equal(again.predict(obs)[0], a)
    other = RandomStepPolicy(0.3, seed=2)
    assert not np.array_equal(np.concatenate([other.predict(obs)[0] for _ in range(20)]), draws[: 7 * 20])
    assert RandomStepPolicy(0.0).predict(obs)[0].sum() == 0


def _manual_threshold(flat, k):
    """Walk every tree by hand: regenerate where the weak PRM score is below k and it is allowed."""
    n = flat.n_trees
    correct = np.zeros(n, dtype=bool)
    strong = np.zeros(n, dtype=np.int64)
    regens = np.zeros(n, dtype=np.int64)
    for t in range(n):
        node = int(flat.tree_root[t])
        while True:
            if flat.weak_prm[node] < k and flat.regen_child[node] != ABSENT:
                strong[t] += flat.strong_tokens[node]
                regens[t] += 1
                final, ok, nxt = flat.strong_final[node], flat.strong_correct[node], flat.regen_child[node]
            else:
                final, ok, nxt = flat.weak_final[node], flat.weak_correct[node], flat.keep_child[node]
            if nxt < 0:
                correct[t] = bool(final and ok == 1)
                break
            node = int(nxt)
    return correct, strong, regens


@pytest.mark.parametrize("k", [0.3, 0.7, 0.95])
def test_threshold_rollout_matches_hand_walk_for_agg_and_seq(flat, k):
    correct, strong, regens = _manual_threshold(flat, k)
    agg = rollout(ThresholdPolicy(k), flat)
    seq_pol = ThresholdPolicy(k)
    seq_pol.obs = "seq"
    seq = rollout(seq_pol, flat)
    for rec in (agg, seq):
        np.testing.assert_array_equal(rec.correct, correct)
        np.testing.assert_array_equal(rec.strong_tokens, strong)
        np.testing.assert_array_equal(rec.interventions, regens)
    assert regens.sum() > 0


def test_always_strong_uses_the_whole_budget(flat):
    rec = rollout(ConstantPolicy(1), flat)
    # every decision regenerates while allowed: interventions = min(budget, steps)
    np.testing.assert_array_equal(rec.interventions, np.minimum(flat.max_interventions, rec.steps))
    assert (rec.strong_tokens > 0).all()
    assert (rec.discarded_weak_tokens > 0).all()
