"""Policy iteration with the regression in TRIM-Seq's transformer over the seq observation."""

import numpy as np
import pytest
import torch

from trim_rl.agents.networks import PolicyNet
from trim_rl.envs.observations import SeqObservation
from trim_rl.training.budget import NodeMargins, spend
from trim_rl.training.policy_iteration import PolicyIterationConfig
from trim_rl.training.seq_iteration import SeqHeads, reached, seq_policy_iteration

ENCODER = {"d_model": 8, "n_heads": 2, "n_layers": 1, "dim_ff": 16}
CFG = PolicyIterationConfig(rounds=2, samples=2000, epochs=1, batch_size=256)


@pytest.fixture(scope="module")
def flat(sim_flat):
    return sim_flat("train", 3, limit=12, draws=2)


def _run(flat, seed=0, budget=20.0):
    torch.set_num_threads(1)
    return seq_policy_iteration(flat, budget=budget, net_arch=[16], encoder=ENCODER, cfg=CFG, seed=seed,
                                reach_floor=1e-3)


def test_cut_sequences_give_the_padded_outputs(flat):
    torch.manual_seed(0)
    net = PolicyNet("seq", 0, [16], "tanh", ENCODER).eval()
    nodes = np.arange(0, flat.n_nodes, max(1, flat.n_nodes // 300))
    with torch.no_grad():
        full = net(torch.as_tensor(SeqObservation().at_nodes(flat, nodes))).double().numpy()
    np.testing.assert_allclose(SeqHeads(flat, net, batch=64)(nodes), full, atol=1e-5)


def test_reached_keeps_the_nodes_above_the_floor(flat):
    from trim_rl.data.tree_dp import reach_probability

    regen = flat.regen_allowed & (flat.weak_prm < 0.3)
    w = reach_probability(flat, np.where(regen, 0.9, 0.1))
    assert np.array_equal(reached(flat, lambda n: regen[n], 0.1, 1e-3), w > 1e-3)


def test_seq_policy_iteration_spends_the_budget_and_is_seeded(flat):
    res = _run(flat)
    assert len(res.rounds) == CFG.rounds and res.lam > 0
    assert abs(res.cost_pct - 20.0) < 3.0, res.rounds
    # the folded network takes the policy's decisions where it was asked: its spend is the policy's
    acc, cost = spend(flat, NodeMargins(flat, res.net, SeqObservation()))
    assert abs(cost - res.cost_pct) < 3.0 and abs(acc - res.accuracy) < 0.05
    again = _run(flat)
    assert np.array_equal(res.regen, again.regen) and res.lam == again.lam
    for a, b in zip(res.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(a, b)


def test_warm_start_and_fixed_price(flat):
    start = flat.regen_allowed & (flat.weak_prm < 0.2)
    res = seq_policy_iteration(flat, lam=1.6e-3, net_arch=[16], encoder=ENCODER, cfg=CFG, seed=1, start_regen=start)
    assert res.lam == pytest.approx(1.6e-3) and np.isfinite(res.accuracy)
    with pytest.raises(ValueError):
        seq_policy_iteration(flat, cfg=CFG)


def test_the_config_block_is_checked():
    from trim_rl.configs import ConfigError, from_mapping
    from trim_rl.training.seq_iteration import SeqPolicyIterationConfig

    cfg = from_mapping(SeqPolicyIterationConfig, {"rounds": 2, "reach_floor": 0.005}, "agent.yaml")
    assert (cfg.rounds, cfg.samples, cfg.reach_floor) == (2, 300_000, 0.005)
    with pytest.raises(ConfigError, match="reach_floor"):
        from_mapping(SeqPolicyIterationConfig, {"reach_floor": 2}, "agent.yaml")
