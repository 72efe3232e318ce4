"""Tests for trim_rl.envs.observations: the live-decoding builders give exactly the env's features."""

from __future__ import annotations

import numpy as np
import pytest

from trim_rl.data.flat import ABSENT
from trim_rl.data.schema import MAX_STEPS
from trim_rl.envs.observations import (
    SEQ_COLUMNS, AggObservation, SeqObservation, StepHistory, builder_from_config, make_builder,
)
from trim_rl.envs.routing_env import REGENERATE, RoutingEnv


@pytest.fixture(scope="module")
def flat(sim_flat):
    return sim_flat("val", 2, limit=10, draws=3)


def _walk(flat, env, builder, p_regen, seed, lam=None):
    """Play every tree with random actions; at each decision compare the env's observation with the
    builder applied to a StepHistory kept in parallel from the tree's own numbers."""
    rng = np.random.default_rng(seed)
    decisions = regens = 0
    for t in range(flat.n_trees):
        opts = {"tree": t} if lam is None else {"tree": t, "lam": lam}
        obs, info = env.reset(options=opts)
        hist = StepHistory()
        node = int(flat.tree_root[t])
        done = False
        while not done:
            expected = builder.from_history(hist, flat.weak_prm[node], flat.weak_tokens[node], lam=lam)
            assert expected.dtype == obs.dtype == np.float32
            np.testing.assert_array_equal(obs, expected, err_msg=f"tree {t} node {node} depth {hist.depth}")
            allowed = flat.regen_child[node] != ABSENT
            assert env.action_masks()[1] == allowed
            a = int(rng.random() < p_regen)
            obs, _, done, _, info = env.step(a)
            decisions += 1
            if a == REGENERATE and allowed:
                hist.append(flat.strong_prm[node], flat.strong_tokens[node], True)
                node = int(flat.regen_child[node])
                regens += 1
            else:
                hist.append(flat.weak_prm[node], flat.weak_tokens[node], False)
                node = int(flat.keep_child[node])
            assert done == (node < 0)
        assert info["interventions"] == hist.interventions
        assert info["steps"] == hist.depth
        assert info["strong_tokens"] == sum(k for k, r in zip(hist.tokens, hist.regenerated) if r)
    assert regens > 20 and decisions > 100  # the walk visited regenerated prefixes


@pytest.mark.parametrize("p_regen", [0.15, 0.5])
def test_agg_from_history_matches_env(flat, p_regen):
    env = RoutingEnv(flat, obs="agg")
    _walk(flat, env, AggObservation(), p_regen, seed=1)


@pytest.mark.parametrize("p_regen", [0.15, 0.5])
def test_seq_from_history_matches_env(flat, p_regen):
    env = RoutingEnv(flat, obs="seq")
    _walk(flat, env, SeqObservation(), p_regen, seed=2)


def test_budget_conditioned_agg_from_history_matches_env(flat):
    env = RoutingEnv(flat, obs="agg", budget_conditioned=True)
    _walk(flat, env, AggObservation(budget_conditioned=True), 0.3, seed=3, lam=3e-3)


def test_agg_features_by_hand():
    b = AggObservation()
    h = StepHistory()
    np.testing.assert_allclose(b.from_history(h, 0.4, 50), [0.4, 1.0, 1.0, 0.5, 0.0, 0.0], rtol=1e-6)
    h.append(0.9, 40, False)
    h.append(0.5, 70, True)
    h.append(0.8, 30, False)
    np.testing.assert_allclose(b.from_history(h, 0.3, 120),
                               [0.3, 0.5, 0.9 * 0.5 * 0.8, 1.2, 3 / MAX_STEPS, 1.0], rtol=1e-6)
    bc = AggObservation(budget_conditioned=True)
    out = bc.from_history(h, 0.3, 120, lam=1e-3)
    assert out.shape == (7,) and out[6] == pytest.approx(-3.0)
    with pytest.raises(ValueError):
        bc.from_history(h, 0.3, 120)  # needs lambda
    assert b.space.contains(b.from_history(h, 0.3, 120))
    assert bc.space.shape == (7,) and b.space.shape == (6,)


def test_seq_features_by_hand():
    b = SeqObservation()
    h = StepHistory()
    h.append(0.9, 40, False)
    h.append(0.5, 70, True)
    out = b.from_history(h, 0.3, 120)
    assert out.shape == (MAX_STEPS, len(SEQ_COLUMNS))
    np.testing.assert_allclose(out[0], [0.9, 0.4, 0, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.5, 0.7, 1, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(out[2], [0.3, 1.2, 0, 1, 1], rtol=1e-6)
    assert not out[3:].any()
    assert b.space.contains(out)
    full = StepHistory()
    for _ in range(MAX_STEPS - 1):
        full.append(0.5, 10, False)
    assert b.from_history(full, 0.5, 10)[-1, 3] == 1.0  # the 30th row holds the current step
    full.append(0.5, 10, False)
    with pytest.raises(ValueError):
        b.from_history(full, 0.5, 10)


def test_make_builder_and_config_round_trip():
    assert isinstance(make_builder("agg"), AggObservation)
    assert make_builder("agg", True).dim == 7
    assert isinstance(make_builder("seq"), SeqObservation)
    with pytest.raises(ValueError):
        make_builder("seq", True)
    with pytest.raises(ValueError):
        make_builder("graph")
    for b in (AggObservation(), AggObservation(True), SeqObservation()):
        c = builder_from_config(b.config())
        assert type(c) is type(b) and c.config() == b.config()
