"""Distillation: a per-node policy copied into TRIM-Seq's transformer over the seq observation."""

import numpy as np
import pytest
import torch

from trim_rl.data.tree_dp import reach_probability
from trim_rl.envs.observations import SeqObservation
from trim_rl.training.budget import NodeMargins
from trim_rl.training.config import DistillConfig, load_agent
from trim_rl.training.distill import distill
from trim_rl.training.ppo_stage import new_actor

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flat(sim_flat):
    return sim_flat("train", 2, limit=30, draws=2)


def _student(seed):
    torch.manual_seed(seed)
    agent = load_agent("agents/trim_seq.yaml", ["policy_kwargs.encoder:{d_model: 16, n_heads: 2, n_layers: 1, dim_ff: 32}"])
    return new_actor(agent)


def test_the_transformer_learns_a_rule_that_needs_the_history(flat):
    torch.set_num_threads(1)
    # regenerate a low-scored step only while every accepted step so far scored high: a rule over the
    # whole prefix, which the seq observation carries row by row
    teacher = (flat.weak_prm < 0.4) & (flat.prev_min > 0.5)
    cfg = DistillConfig(samples=20000, epochs=6, batch_size=256, learning_rate=3e-3)
    net = _student(0)
    agreement = distill(flat, teacher, net, SeqObservation(), cfg, seed=1)
    w = reach_probability(flat, teacher.astype(float))
    nodes = np.flatnonzero((w > 0) & flat.regen_allowed)
    m = NodeMargins(flat, net, SeqObservation())(nodes)
    on_path = ((m > 0) == teacher[nodes]).mean()
    assert agreement > 0.9 and on_path > 0.9
    again = _student(0)
    distill(flat, teacher, again, SeqObservation(), cfg, seed=1)  # seeded: the same weights
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
