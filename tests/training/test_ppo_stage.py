"""PPO's actor in and out of SB3, and model zips that a signal cannot truncate."""

import os

import numpy as np
import pytest
import torch

from trim_rl.training.config import load_agent
from trim_rl.training.ppo_stage import actor_net, copy_actor_in, make_model, new_actor, save_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from trim_rl.envs.vec_env import RoutingVecEnv
    from trim_rl.sim.generate import generate_file

    p = tmp_path_factory.mktemp("ppo") / "t.jsonl.gz"
    generate_file("math500", "train", 3, p, limit=5, draws=1)
    agent = load_agent("agents/trim_agg.yaml", ["n_steps:16", "batch_size:32"])
    return agent, make_model(agent, RoutingVecEnv(str(p), num_envs=4), seed=0)


def test_an_actor_goes_in_and_comes_out_unchanged(model):
    agent, m = model
    torch.manual_seed(3)
    net = new_actor(agent)
    copy_actor_in(m, net)
    x = torch.as_tensor(np.random.default_rng(0).random((64, 6)).astype(np.float32))
    with torch.no_grad():
        ref = m.policy.get_distribution(x).distribution.logits
        out = actor_net(m, agent)(x)
    torch.testing.assert_close(torch.log_softmax(out, -1), ref, atol=1e-6, rtol=0)


def test_a_failed_save_leaves_the_good_zip(model, tmp_path, monkeypatch):
    _, m = model
    path = tmp_path / "model.zip"
    save_model(m, path)
    good = path.read_bytes()

    def half_written(p, *a, **k):
        with open(p, "wb") as fh:
            fh.write(b"PK\x03\x04 truncated")
        raise KeyboardInterrupt  # the signal arrives in the middle of the write

    monkeypatch.setattr(m, "save", half_written)
    with pytest.raises(KeyboardInterrupt):
        save_model(m, path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["model.zip"]  # no temporary file left either
