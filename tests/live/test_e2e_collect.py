"""Collect trees from a real llama.cpp server; they load in RoutingEnv and train with PPO."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from gymnasium.utils.env_checker import check_env

from tests.live.conftest import FAST, REPO, live_cli
from trim_rl.data.flat import load_flat
from trim_rl.data.trees import read_trees
from trim_rl.envs.routing_env import RoutingEnv


def test_collect_three_problems_then_train(llama_url, tmp_path):
    out = tmp_path / "trees.jsonl"
    args = ["collect", "--weak-url", llama_url, "--strong-url", llama_url, "--prm", "self-verify",
            "--problems", "gsm8k", "--limit", 3, "-K", 1, "--max-depth", 4, "--out", out, *FAST]
    r = live_cli(*args)
    assert r.returncode == 0, r.stderr
    trees = read_trees(out)  # validates every tree
    assert len(trees) == 3
    for t in trees:
        assert t["max_interventions"] == 1
        assert t["models"]["prm"].startswith("self-verify:")
        assert t["nodes"][0]["regenerate"] is None or t["nodes"][0]["regenerate"] > 0
        assert all("text" in n["weak"] for n in t["nodes"])
        assert 1 <= t["strong_only"]["steps"] <= 4
    flat = load_flat(out)
    assert flat.n_trees == 3
    env = RoutingEnv(flat, lam=1e-3)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0, options={"tree": 0})
    done = False
    while not done:
        obs, reward, done, _, info = env.step(1 if env.action_masks()[1] else 0)
    assert info["interventions"] == 1

    # resuming a finished collection adds nothing
    r2 = live_cli(*args)
    assert r2.returncode == 0, r2.stderr
    assert len(read_trees(out)) == 3

    # a few PPO steps on the collected trees, with the README's train.py
    env_yaml = tmp_path / "collected.yaml"
    env_yaml.write_text(yaml.safe_dump({"name": "collected", "train": str(out), "val": str(out), "test": str(out),
                                        "lam": 1e-3, "lam_grid": [1e-3]}))
    tr = subprocess.run([sys.executable, "train.py", "--env", str(env_yaml), "--runs", str(tmp_path / "runs"),
                         "--hyperparams", "total_timesteps:256", "eval_freq:128", "n_envs:4", "n_steps:32",
                         "batch_size:64", "n_epochs:1"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert tr.returncode == 0, tr.stderr
    run = next((tmp_path / "runs").rglob("config.yml")).parent
    assert (run / "model.zip").exists() and list((run / "tb").rglob("events.out.tfevents.*"))
    summary = json.loads(r.stdout)
    assert summary["finished"] == 3 and summary["nodes"] == sum(len(t["nodes"]) for t in trees)
