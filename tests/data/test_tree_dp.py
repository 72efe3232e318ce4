"""trim_rl.data.tree_dp: exact policy values agree with playing the env, on real simulated trees."""

import numpy as np
import pytest

from trim_rl.data.flat import concat
from trim_rl.data.tree_dp import max_spend, play, policy_outcomes, reach_probability
from trim_rl.evaluation.rollout import rollout
from trim_rl.agents.baselines import ThresholdPolicy


@pytest.fixture(scope="module")
def flat(sim_flat):
    return sim_flat("test", 4, limit=12, draws=3)


@pytest.mark.parametrize("k", [0.0, 0.3, 0.7, 1.0])
def test_backward_pass_walk_and_env_agree(flat, k):
    regen = flat.weak_prm < k
    out = policy_outcomes(flat, regen)
    correct, tokens = play(flat, regen)
    rec = rollout(ThresholdPolicy(k), flat)
    np.testing.assert_array_equal(correct, rec.correct)
    np.testing.assert_array_equal(tokens, rec.strong_tokens)
    np.testing.assert_allclose(out.accuracy[flat.tree_root], correct.astype(float))
    np.testing.assert_allclose(out.tokens[flat.tree_root], tokens)
    # a callable decision gives the same walk as the array
    c2, t2 = play(flat, lambda nodes: regen[nodes])
    np.testing.assert_array_equal(c2, correct)
    np.testing.assert_array_equal(t2, tokens)


def test_advantage_is_the_difference_of_the_two_actions(flat):
    regen = flat.weak_prm < 0.4
    out = policy_outcomes(flat, regen)
    lam = 2e-3
    allowed = flat.regen_allowed
    # flipping one root decision changes that tree's value by exactly the advantage there
    roots = flat.tree_root[allowed[flat.tree_root]][:5]
    base = out.accuracy - lam * out.tokens
    adv = out.advantage(lam)
    for r in roots:
        flipped = regen.copy()
        flipped[r] = not flipped[r]
        o2 = policy_outcomes(flat, flipped)
        delta = (o2.accuracy - lam * o2.tokens)[r] - base[r]
        assert delta == pytest.approx(adv[r] if flipped[r] else -adv[r], abs=1e-12)
    assert (adv[~allowed] == 0).all()


def test_reach_probability_follows_the_policy(flat):
    regen = flat.weak_prm < 0.5
    w = reach_probability(flat, regen.astype(float))
    on_path = np.zeros(flat.n_nodes, bool)
    node = flat.tree_root.copy()
    live = np.arange(flat.n_trees)
    while live.size:  # the nodes a deterministic walk visits have reach 1, all others 0
        n = node[live]
        on_path[n] = True
        act = regen[n] & flat.regen_allowed[n]
        nxt = np.where(act, flat.regen_child[n], flat.keep_child[n])
        node[live] = nxt
        live = live[nxt >= 0]
    np.testing.assert_array_equal(w == 1.0, on_path)
    assert set(np.unique(w)) <= {0.0, 1.0}
    # with exploration every reachable node has positive weight, and each level sums to at most 1 per tree
    w2 = reach_probability(flat, np.where(regen, 0.9, 0.1))
    assert (w2 > 0).all()
    assert np.bincount(flat.tree_index[flat.depth == 1], w2[flat.depth == 1]).max() <= 1 + 1e-12


def test_max_spend_bounds_every_policy(flat):
    most = max_spend(flat)
    for k in (0.2, 0.6, 2.0):
        _, tokens = play(flat, flat.weak_prm < k)
        assert (tokens <= most).all()
    _, all_regen = play(flat, np.ones(flat.n_nodes, bool))
    assert (all_regen <= most).all() and (most > 0).any()


def test_concat_keeps_every_tree(flat):
    both = concat([flat, flat])
    assert both.n_trees == 2 * flat.n_trees and both.n_nodes == 2 * flat.n_nodes
    c1, t1 = play(flat, flat.weak_prm < 0.5)
    c2, t2 = play(both, both.weak_prm < 0.5)
    np.testing.assert_array_equal(np.concatenate([c1, c1]), c2)
    np.testing.assert_array_equal(np.concatenate([t1, t1]), t2)
