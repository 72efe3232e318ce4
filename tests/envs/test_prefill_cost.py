"""The prefill cost of an escalation: the unseen prefix per node, the env's reward with a
``prefill_weight``, RoutingVecEnv agreeing with RoutingEnv under it, and the step oracle's answer."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from trim_rl.data.flat import ABSENT
from trim_rl.data.tree_dp import play, step_dp
from trim_rl.envs.routing_env import KEEP, REGENERATE, RoutingEnv
from trim_rl.envs.vec_env import RoutingVecEnv

LAM = 2e-3


@pytest.fixture(scope="module")
def flat(sim_flat):
    return sim_flat("test", 2, limit=12, draws=3)


def test_the_unseen_prefix_is_the_weak_tokens_kept_since_the_last_strong_step(flat):
    unseen = flat.unseen_prefix_tokens()
    rng = np.random.default_rng(0)
    for node in rng.choice(flat.n_nodes, 300, replace=False):
        expected, n = 0, int(node)
        while flat.parent[n] >= 0 and flat.parent_action[n] == KEEP:  # walk up to the last strong step
            n = int(flat.parent[n])
            expected += int(flat.weak_tokens[n])
        assert unseen[node] == expected


def test_a_regenerate_pays_the_weighted_prefix_in_the_env(flat):
    plain = RoutingEnv(flat, lam=LAM)
    heavy = RoutingEnv(flat, lam=LAM, prefill_weight=0.5)
    for env in (plain, heavy):
        env.reset(seed=3, options={"tree": 4})
    kept = 0
    for _ in range(2):  # keep two weak steps, then regenerate
        n = plain.current_node
        kept += int(flat.weak_tokens[n])
        if flat.weak_final[n]:
            pytest.skip("the tree ends before a regenerate")
        plain.step(KEEP)
        heavy.step(KEEP)
    n = plain.current_node
    assert flat.regen_child[n] >= 0
    _, r0, *_ = plain.step(REGENERATE)
    _, r1, *_ = heavy.step(REGENERATE)
    strong = int(flat.strong_tokens[n])
    end = 1.0 if flat.strong_final[n] and flat.strong_correct[n] == 1 else 0.0
    assert r0 == pytest.approx(end - LAM * strong)
    assert r1 == pytest.approx(end - LAM * (strong + round(0.5 * kept)))


def test_the_vec_env_agrees_with_the_env_under_a_prefill_weight(flat):
    vec = RoutingVecEnv(flat, num_envs=4, lam=LAM, prefill_weight=1.0)
    dummy = DummyVecEnv([lambda: RoutingEnv(flat, lam=LAM, prefill_weight=1.0) for _ in range(4)])
    vec.seed(7)
    dummy.seed(7)
    np.testing.assert_array_equal(vec.reset(), dummy.reset())
    rng = np.random.default_rng(1)
    paid = []
    for _ in range(400):
        actions = rng.integers(0, 2, 4) * vec.action_masks()[:, 1]
        o1, r1, d1, i1 = vec.step(actions)
        o2, r2, d2, i2 = dummy.step(actions)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_allclose(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        paid += [a["strong_tokens"] for a, d in zip(i1, d1) if d]
    assert paid and sum(paid) > 0


def test_the_weight_zero_is_the_plain_cost_and_bad_weights_are_refused(flat):
    assert flat.with_prefill_weight(0.0) is flat
    for bad in (-1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="prefill_weight"):
            flat.with_prefill_weight(bad)


def test_the_oracle_escalates_in_fewer_longer_runs_when_prefill_costs(flat):
    """Pricing the prefill makes breaking a run of strong steps dear: at the same spend the step oracle
    regenerates in fewer runs (consecutive strong steps) per regenerated step."""
    def runs_per_regen(trees, lam):
        act = step_dp(trees, lam)[0].astype(bool)
        count = {"runs": 0, "regens": 0}

        def walk(nodes):  # a run starts at a regenerate entered by a keep (or at the root)
            a = act[nodes] & (flat.regen_child[nodes] != ABSENT)
            count["runs"] += int((a & (flat.parent_action[nodes] != REGENERATE)).sum())
            count["regens"] += int(a.sum())
            return a

        spend = play(flat, walk)[1].sum()  # decode tokens, on the plain trees (same nodes)
        return count["runs"] / max(1, count["regens"]), spend

    heavy = flat.with_prefill_weight(4.0)
    plain_ratio, plain_spend = runs_per_regen(flat, 3e-3)
    # the weighted trees' price that spends about as many strong tokens (decode only) as the plain one
    best = min((abs(play(flat, step_dp(heavy, lam)[0])[1].sum() - plain_spend), lam)
               for lam in np.geomspace(3e-4, 3e-3, 25))[1]
    heavy_ratio, _ = runs_per_regen(heavy, best)
    assert heavy_ratio < plain_ratio
