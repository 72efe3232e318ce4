"""--init-from: PPO's actor starts from an exported checkpoint; mismatches are named."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from trim_rl.agents.exported import ExportedPolicy
from trim_rl.agents.networks import PolicyNet
from trim_rl.agents.checkpoint import write_network_checkpoint
from trim_rl.training.config import agent_from_dict
from trim_rl.training.warm_start import load_actor
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow



def checkpoint(tmp_path, obs="agg", net_arch=(64, 64), encoder=None, name="ck"):
    torch.manual_seed(7)
    dim = 6 if obs == "agg" else 5
    net = PolicyNet(obs, dim, list(net_arch), "tanh", encoder)
    meta = {"family": "test", "observation": {"name": obs, "budget_conditioned": False}, "lam": 1e-3,
            "network": {"obs_dim": dim, "net_arch": list(net_arch), "activation": "tanh", "encoder": encoder}}
    return write_network_checkpoint(net, meta, tmp_path / name)


def model_for(agent, trees):
    from trim_rl.envs.vec_env import RoutingVecEnv
    from trim_rl.training.ppo_stage import make_model

    agent.hyperparams = {"n_steps": 16, "batch_size": 32}
    return make_model(agent, RoutingVecEnv(trees, num_envs=4, obs=agent.obs), seed=0)


def train_from(ck, tiny_env, tiny_args, runs, *extra):
    """``train.py --init-from ck`` with the tiny settings; the finished process."""
    return subprocess.run([sys.executable, "train.py", "--env", str(tiny_env), "--lam", "1e-3", "--runs", str(runs),
                           "--init-from", str(ck), "--no-progress", "--hyperparams", *tiny_args, *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("obs", ["agg", "seq"])
def test_actor_starts_as_the_checkpoint(tiny_env, tmp_path, obs):
    env = yaml.safe_load(tiny_env.read_text())
    enc = {"d_model": 16, "n_heads": 2, "n_layers": 1, "dim_ff": 32} if obs == "seq" else None
    ck = checkpoint(tmp_path, obs, (32,) if obs == "seq" else (64, 64), enc)
    agent = agent_from_dict({"obs": obs, "policy_kwargs": {"net_arch": [32] if obs == "seq" else [64, 64],
                                                           "activation": "tanh", **({"encoder": enc} if enc else {})}})
    model = model_for(agent, env["train"])
    shape = (1000, 6) if obs == "agg" else (1000, 30, 5)
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    if obs == "seq":
        x[:, :, 3:] = 0.0
        x[:, :4, 4] = 1.0
        x[:, 3, 3] = 1.0
    pol = ExportedPolicy(ck)
    before = model.policy.get_distribution(torch.as_tensor(x)).distribution.probs.detach().numpy()
    assert not np.allclose(before, torch.softmax(torch.as_tensor(pol.logits(x)), -1).numpy(), atol=1e-3)
    load_actor(model, ck, agent)
    after = model.policy.get_distribution(torch.as_tensor(x)).distribution.probs.detach().numpy()
    np.testing.assert_allclose(after, torch.softmax(torch.as_tensor(pol.logits(x)), -1).numpy(), atol=1e-5)


def test_a_different_network_is_named(tiny_env, tmp_path):
    env = yaml.safe_load(tiny_env.read_text())
    ck = checkpoint(tmp_path)
    agent = agent_from_dict({"obs": "agg", "policy_kwargs": {"net_arch": [32, 32], "activation": "tanh"}})
    model = model_for(agent, env["train"])
    with pytest.raises(ValueError, match=r"policy\.json.*network\.net_arch is \[64, 64\], the agent asks for \[32, 32\]"):
        load_actor(model, ck, agent)


def test_cli_records_init_from_and_refuses_a_missing_checkpoint(tiny_env, tiny_args, tmp_path):
    ck = checkpoint(tmp_path)
    runs = tmp_path / "runs"
    r = train_from(ck, tiny_env, tiny_args, runs)
    assert r.returncode == 0, r.stderr[-3000:]
    (d,) = [p for p in runs.glob("*/*") if p.is_dir()]
    cfg = yaml.safe_load((d / "config.yml").read_text())
    assert cfg["agent"]["init_from"] == str(ck.resolve()) and cfg["agent"]["recipe"] == ["ppo"]
    from trim_rl.agents.registry import load_checkpoint
    from trim_rl.training.exporting import export_run

    pol = load_checkpoint(export_run(d, tmp_path / "exported"))
    assert pol.family == "TRIM-Agg (fine-tuned)" and pol.meta["source"]["init_from"] == str(ck.resolve())
    assert pol.meta["recipe"] == {"name": "PPO", "stages": ["ppo"], "init_from": str(ck.resolve())}
    r = subprocess.run([sys.executable, "train.py", "--env", str(tiny_env), "--runs", str(runs), "--init-from",
                        str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "no policy.json there" in r.stderr and not list(runs.glob("*/*/"))[1:]


def test_train_py_starts_from_the_checkpoint_it_is_given(tiny_env, tiny_args, tmp_path):
    from trim_rl.training.exporting import export_run

    ck = checkpoint(tmp_path)
    runs = tmp_path / "runs"
    # learning rate 0: PPO runs but leaves the actor where --init-from put it
    r = train_from(ck, tiny_env, tiny_args, runs, "learning_rate:0.0")
    assert r.returncode == 0, r.stderr[-3000:]
    (d,) = [p for p in runs.glob("*/*") if p.is_dir()]
    x = np.random.default_rng(1).random((500, 6)).astype(np.float32)
    trained = ExportedPolicy(export_run(d, tmp_path / "exported", which="last"))
    np.testing.assert_allclose(trained.logits(x), ExportedPolicy(ck).logits(x), atol=1e-6)


def test_a_mismatched_checkpoint_is_refused_before_any_run_folder(tiny_env, tiny_args, tmp_path):
    ck = checkpoint(tmp_path, net_arch=(16,), name="small")  # the agent YAML builds [64, 64]
    runs = tmp_path / "runs"
    r = train_from(ck, tiny_env, tiny_args, runs)
    assert r.returncode == 2
    assert f"{ck / 'policy.json'}: cannot start this agent from it: network.net_arch is [16]" in r.stderr
    assert not runs.exists()


def test_a_checkpoint_without_its_weights_is_refused_before_any_run_folder(tiny_env, tiny_args, tmp_path):
    ck = checkpoint(tmp_path)
    (ck / "model.safetensors").unlink()
    runs = tmp_path / "runs"
    r = train_from(ck, tiny_env, tiny_args, runs)
    assert r.returncode == 2
    assert f"train.py: --init-from: {ck / 'model.safetensors'}: weights file named by" in r.stderr
    assert "Traceback" not in r.stderr
    assert not runs.exists()
