"""The seq_policy_iteration stage: policy iteration in TRIM-Seq's own transformer, after the agg stage."""

import json

import pytest

from trim_rl.configs import ConfigError
from trim_rl.training.config import load_agent

SMALL = ["policy_kwargs.encoder:{d_model: 8, n_heads: 2, n_layers: 1, dim_ff: 16}", "policy_kwargs.net_arch:[16]",
         "policy_iteration.rounds:2", "policy_iteration.samples:3000",
         "seq_policy_iteration:{rounds: 2, samples: 2000, epochs: 1, batch_size: 256, reach_floor: 0.001}"]


def test_the_recipe_is_checked():
    agent = load_agent("agents/trim_seq.yaml", ["recipe:[policy_iteration, seq_policy_iteration, ppo]", *SMALL])
    assert agent.recipe == ["policy_iteration", "seq_policy_iteration", "ppo"]
    assert (agent.seq_policy_iteration.rounds, agent.seq_policy_iteration.reach_floor) == (2, 0.001)
    for recipe, words in (("[seq_policy_iteration, ppo]", "needs a policy_iteration stage before it"),
                          ("[policy_iteration, seq_policy_iteration, distill]", "both make the seq network"),
                          ("[policy_iteration, ppo]", "needs a distill or seq_policy_iteration stage")):
        with pytest.raises(ConfigError, match=words):
            load_agent("agents/trim_seq.yaml", [f"recipe:{recipe}"])
    with pytest.raises(ConfigError, match="runs the seq observation"):
        load_agent("agents/trim_agg.yaml", ["recipe:[policy_iteration, seq_policy_iteration]"])


def test_a_run_spends_its_budget_with_the_stage(tiny_env, tmp_path):
    import trim_rl

    run = trim_rl.train("agents/trim_seq.yaml", str(tiny_env), budget=20.0, runs=tmp_path,
                        hyperparams=["recipe:[policy_iteration, seq_policy_iteration]", *SMALL])
    folder = run.path
    result = run.result
    assert abs(result["calib_cost_pct"] - 20.0) < 5.0
    meta = json.loads((folder / "stages" / "seq_policy_iteration" / "policy.json").read_text())
    assert meta["observation"]["name"] == "seq" and len(meta["rounds"]) == 2
    stats = json.loads((folder / "train_stats.json").read_text())
    assert "seq_policy_iteration_seconds" in stats and "distill_seconds" not in stats
