"""The Bayes filter: calibrated on simulated trees, right under flipped actions, live one at a time."""

import numpy as np

from trim_rl.agents.baselines import RandomStepPolicy
from trim_rl.agents.pomdp.belief import BeliefFilter, BeliefState
from trim_rl.agents.pomdp.calibration import node_beliefs, reliability, weighted_reliability
from trim_rl.agents.pomdp.fit import tree_labels
from trim_rl.data.tree_dp import reach_probability
from trim_rl.agents.pomdp.policy import POMDPPolicy
from trim_rl.agents.pomdp.solver import solve
from trim_rl.envs.vec_env import RoutingVecEnv


def test_belief_is_calibrated_on_the_simulated_test_trees(bundled_test, fitted):
    """Predicted P(S2) vs the observed frequency of S2 in 10 equal-width bins, over every decision
    point of the held-out test trees weighted by how often a router regenerating 20% of the steps
    reaches it: every bin within 0.05."""
    state = tree_labels(bundled_test).weak_state
    b = node_beliefs(BeliefFilter(fitted), bundled_test)
    assert np.allclose(b.sum(axis=1), 1.0)
    known = state >= 0
    r = weighted_reliability(b[known, 2], (state[known] == 2).astype(float), reach_probability(bundled_test, 0.2)[known])
    assert (r["n_eff"] > 30).all(), r["n_eff"]
    assert r["error"].max() <= 0.05, f"calibration errors per bin {np.round(r['error'], 3)}"


def test_filter_follows_the_actions_played_even_when_they_are_flipped(bundled_test, fitted):
    """Beliefs inside predict's state equal the filter run along each node's path, while the actions
    actually played are the policy's with 30% flipped after predict (read back from column 5)."""
    trees = bundled_test.subset(np.arange(60))
    policy = POMDPPolicy(fitted, solve(fitted, 1.6e-3))
    expected = node_beliefs(policy.filter, trees)
    venv = RoutingVecEnv.every_tree_once(trees, seed=0)
    obs, state, start = venv.reset(), None, np.ones(trees.n_trees, dtype=bool)
    rng = np.random.default_rng(0)
    flipped = 0
    for _ in range(40):
        masks = venv.action_masks()
        nodes = venv.current_nodes
        a, state = policy.predict(obs, state, start, action_masks=masks)
        assert isinstance(state, BeliefState)
        assert np.allclose(state.states, expected[nodes], atol=1e-6)
        flip = (rng.random(a.size) < 0.3) & masks[np.arange(a.size), 1 - a]
        flipped += int(flip.sum())
        obs, _, start, _ = venv.step(np.where(flip, 1 - a, a))
    assert flipped > 100


def test_one_observation_at_a_time_matches_the_batch(bundled_test, fitted):
    trees = bundled_test.subset(np.arange(8))
    policy = POMDPPolicy(fitted, solve(fitted, 8e-4))
    venv = RoutingVecEnv.every_tree_once(trees, seed=1)
    obs = venv.reset()
    behaviour = RandomStepPolicy(0.4, seed=3)
    batch_state, live = None, [None] * trees.n_trees
    start = np.ones(trees.n_trees, dtype=bool)
    for _ in range(25):
        a, batch_state = policy.predict(obs, batch_state, start)
        for i in range(trees.n_trees):  # live decoding: one observation, no episode_start
            ai, live[i] = policy.predict(obs[i], live[i])
            assert ai.shape == (1,) and ai[0] == a[i]
            assert np.allclose(live[i].states[0], batch_state.states[i])
        act, _ = behaviour.predict(obs)
        obs, _, start, _ = venv.step(act)


def test_one_observation_fast_path_is_bit_for_bit_the_array_path(fitted):
    """predict on one observation (Python floats) gives exactly the actions and beliefs of the array
    code, over random histories with regenerations, restarts, masks and out-of-range scores."""
    fast = POMDPPolicy(fitted, solve(fitted, 1.6e-3))
    slow = POMDPPolicy(fitted, fast.solution)
    slow._value = None  # forces the array path
    rng = np.random.default_rng(0)
    sf = ss = None
    depth, k, regens = 0, 0, 0
    for _i in range(600):
        restart = depth > 12 or rng.random() < 0.05
        depth, k = (0, 0) if restart else (depth, k)
        x = rng.choice([0.0, 1.0, 1.2, rng.random(), rng.random() ** 4])
        obs = np.array([x, rng.random(), rng.random() * (rng.random() < 0.8), rng.random() * 3, depth / 30, k],
                       dtype=np.float32)
        mask = np.array([[True, rng.random() < 0.9]])
        af, sf = fast.predict(obs, sf, np.array([restart]), action_masks=mask)
        as_, ss = slow.predict(obs[None], ss, np.array([restart]), action_masks=mask)
        assert af.dtype == as_.dtype and af.tolist() == as_.tolist()
        for f in ("belief", "depth", "k", "prod", "min_prior"):
            a, b = getattr(sf, f), getattr(ss, f)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), f
        tok = obs[3:4].astype(np.float64) * 100.0
        qk, qr = slow.q_values(ss, tok)
        c = int(fitted.tokens.bin(tok)[0])
        assert fast.q.one(fast._value, int(ss.depth[0]), int(ss.k[0]), c, ss.states[0].tolist()) == (qk[0], qr[0])
        regen = bool(af[0]) or rng.random() < 0.2
        depth, k, regens = depth + 1, k + regen, regens + regen
    assert regens > 50


def test_reliability_bins():
    r = reliability(np.array([0.05, 0.05, 0.95, 0.95]), np.array([0, 1, 1, 1]))
    assert r["count"][0] == 2 and r["count"][9] == 2
    assert r["freq"][0] == 0.5 and r["freq"][9] == 1.0
