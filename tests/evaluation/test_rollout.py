"""Tests for trim_rl.evaluation.rollout: playing a policy over every tree once."""

from __future__ import annotations

import numpy as np
import pytest

from trim_rl.agents.baselines import ConstantPolicy, RandomStepPolicy, ThresholdPolicy
from trim_rl.data.flat import ABSENT, load_flat
from trim_rl.evaluation.rollout import Records, query_records, rollout, weak_only_records
from trim_rl.evaluation.sweep import RANDOM_P, THRESHOLDS, sweep
from trim_rl.sim.generate import generate_file


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    p = tmp_path_factory.mktemp("rollout") / "trees.jsonl.gz"
    generate_file("math500", "test", 6, p, limit=10, draws=4)
    return load_flat(p)


def test_always_weak_equals_weak_only(flat):
    rec = rollout(ConstantPolicy(0), flat)
    w = flat.weak_only()
    np.testing.assert_array_equal(rec.correct, w["correct"])
    np.testing.assert_array_equal(rec.weak_tokens, w["weak_tokens"])
    np.testing.assert_array_equal(rec.steps, w["steps"])
    assert not rec.strong_tokens.any() and not rec.interventions.any() and not rec.discarded_weak_tokens.any()
    ref = weak_only_records(flat)
    for k in ("correct", "strong_tokens", "weak_tokens", "discarded_weak_tokens", "interventions", "steps"):
        np.testing.assert_array_equal(getattr(rec, k), getattr(ref, k), err_msg=k)
    assert 0 < rec.correct.mean() < 1


def test_routing_errors_one_flips_every_legal_decision(flat):
    rec = rollout(ConstantPolicy(0), flat, routing_errors=1.0, seed=3)
    strong = rollout(ConstantPolicy(1), flat)
    # with every decision flipped, always-weak plays always-strong (within each tree's budget)
    for k in ("correct", "strong_tokens", "weak_tokens", "discarded_weak_tokens", "interventions", "steps"):
        np.testing.assert_array_equal(getattr(rec, k), getattr(strong, k), err_msg=k)
    # in particular the first step regenerates wherever that is legal
    roots = flat.tree_root
    legal = flat.regen_child[roots] != ABSENT
    assert legal.any()
    assert (rec.interventions[legal] >= 1).all()
    assert (rec.strong_tokens[legal] >= flat.strong_tokens[roots][legal]).all()
    assert (rec.discarded_weak_tokens[legal] >= flat.weak_tokens[roots][legal]).all()
    np.testing.assert_array_equal(rec.interventions, np.minimum(flat.max_interventions, rec.steps))


def test_routing_errors_partial_is_seeded(flat):
    a = rollout(ThresholdPolicy(0.5), flat, routing_errors=0.3, seed=1)
    b = rollout(ThresholdPolicy(0.5), flat, routing_errors=0.3, seed=1)
    c = rollout(ThresholdPolicy(0.5), flat, routing_errors=0.3, seed=2)
    clean = rollout(ThresholdPolicy(0.5), flat)
    np.testing.assert_array_equal(a.interventions, b.interventions)
    np.testing.assert_array_equal(a.strong_tokens, b.strong_tokens)
    assert not np.array_equal(a.strong_tokens, c.strong_tokens)
    assert not np.array_equal(a.strong_tokens, clean.strong_tokens)
    assert (a.interventions <= flat.max_interventions).all()


def test_records_are_consistent(flat):
    rec = rollout(RandomStepPolicy(0.4, seed=0), flat)
    assert isinstance(rec, Records)
    for k in ("correct", "strong_tokens", "weak_tokens", "discarded_weak_tokens", "interventions", "steps"):
        assert getattr(rec, k).shape == (flat.n_trees,)
    assert (rec.discarded_weak_tokens <= rec.weak_tokens).all()
    assert ((rec.interventions > 0) == (rec.strong_tokens > 0)).all()
    assert (rec.interventions <= rec.steps).all()
    s = rec.summary()
    assert s["correct"] == pytest.approx(rec.correct.mean())
    assert s["strong_tokens"] == pytest.approx(rec.strong_tokens.mean())


def test_query_records(flat):
    to_strong = np.arange(flat.n_trees) % 3 == 0
    rec = query_records(flat, to_strong)
    w = weak_only_records(flat)
    np.testing.assert_array_equal(rec.correct, np.where(to_strong, flat.strong_only_correct, w.correct))
    np.testing.assert_array_equal(rec.strong_tokens, np.where(to_strong, flat.strong_only_tokens, 0))
    np.testing.assert_array_equal(rec.weak_tokens, np.where(to_strong, 0, w.weak_tokens))
    np.testing.assert_array_equal(rec.steps, np.where(to_strong, flat.strong_only_steps, w.steps))
    all_strong = query_records(flat, np.ones(flat.n_trees, dtype=bool))
    np.testing.assert_array_equal(all_strong.correct, flat.strong_only_correct)


def test_sweep_families(flat):
    thr = sweep("thr", flat)
    assert [p.setting for p in thr] == THRESHOLDS
    # thresholds 0 and 1 bracket the sweep: 0 never regenerates
    np.testing.assert_array_equal(thr[0].records.correct, flat.weak_only()["correct"])
    assert thr[0].records.strong_tokens.sum() == 0
    assert thr[-1].records.strong_tokens.sum() > thr[len(thr) // 2].records.strong_tokens.sum() > 0
    rnd = sweep("random", flat, seed=0)
    assert [p.setting for p in rnd] == RANDOM_P
    assert rnd[0].records.strong_tokens.sum() == 0
    strong = sweep("always-strong", flat)
    assert len(strong) == 1
    np.testing.assert_array_equal(strong[0].records.strong_tokens, flat.strong_only_tokens)
    with pytest.raises(ValueError):
        sweep("no-such-policy", flat)


def test_budget_conditioned_policy_sees_lambda(flat):
    """rollout shows its lambda to a budget-conditioned policy (column 6 = log10 lambda)."""

    class LamProbe:
        obs = "agg"
        budget_conditioned = True

        def __init__(self):
            self.seen = []

        def predict(self, observation, state=None, episode_start=None, deterministic=True, action_masks=None):
            self.seen.append(np.asarray(observation)[:, 6].copy())
            return np.zeros(observation.shape[0], dtype=np.int64), state

    probe = LamProbe()
    rollout(probe, flat, lam=2e-3)
    seen = np.concatenate(probe.seen)
    np.testing.assert_allclose(seen, np.log10(2e-3), rtol=1e-6)


def test_same_seed_same_records(flat):
    """A rollout is a deterministic function of its seed (the env's sweep and the routing errors)."""
    def play(seed: int) -> Records:
        return rollout(RandomStepPolicy(0.3, 1), flat, routing_errors=0.2, seed=seed)

    a, b, c = play(4), play(4), play(5)
    fields = ("correct", "strong_tokens", "weak_tokens", "discarded_weak_tokens", "interventions", "steps")
    for k in fields:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert any(not np.array_equal(getattr(a, k), getattr(c, k)) for k in fields)
