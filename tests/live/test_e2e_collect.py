"""Collect trees from a real llama.cpp server in three shards, merge them, train on them with PPO."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import yaml
from gymnasium.utils.env_checker import check_env

from tests.live.conftest import FAST, REPO, live_cli
from trim_rl.data.flat import load_flat
from trim_rl.data.problems import load_problems
from trim_rl.data.trees import read_trees
from trim_rl.envs.routing_env import RoutingEnv
import pytest

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow


def test_three_shards_of_six_problems_merge_and_train(llama_url, tmp_path):
    shards = [tmp_path / f"shard{i}.jsonl" for i in (1, 2, 3)]

    def args(i):
        return ["collect", "--weak-url", llama_url, "--strong-url", llama_url, "--prm", "self-verify",
                "--problems", "gsm8k", "--limit", 6, "--shard", f"{i}/3", "-K", 1, "--max-depth", 3,
                "--out", shards[i - 1], *FAST, "--max-tokens", 24]

    # three "machines" at once, against one server
    procs = [subprocess.Popen([sys.executable, "-m", "trim_rl.live", *map(str, args(i))], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 2, 3)]
    results = [p.communicate(timeout=900) for p in procs]
    for p, (_out, err) in zip(procs, results):
        assert p.returncode == 0, err
    ids = [[t["problem_id"] for t in read_trees(s)] for s in shards]
    expected = [p.problem_id for p in load_problems("gsm8k")[:6]]
    assert ids == [expected[0::3], expected[1::3], expected[2::3]]
    summaries = [json.loads(out) for out, _ in results]
    assert [s["finished"] for s in summaries] == [2, 2, 2]

    merged = tmp_path / "trees.jsonl"
    m = subprocess.run([sys.executable, "-m", "trim_rl.data", "merge", merged, *shards], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert m.returncode == 0, m.stderr
    trees = read_trees(merged)  # validates every tree
    assert sorted(t["problem_id"] for t in trees) == sorted(expected)
    for t in trees:
        assert t["max_interventions"] == 1 and t["models"]["prm"].startswith("self-verify:")
        assert t["meta"]["max_depth"] == 3 and t["meta"]["max_tokens"] == 24
        assert all("text" in n["weak"] for n in t["nodes"])
        assert 1 <= t["strong_only"]["steps"] <= 3
    flat = load_flat(merged)
    assert flat.n_trees == 6
    env = RoutingEnv(flat, lam=1e-3)
    check_env(env, skip_render_check=True)

    # resuming a finished shard adds nothing; merging a shard twice is refused by name
    r2 = live_cli(*args(1))
    assert r2.returncode == 0, r2.stderr
    assert len(read_trees(shards[0])) == 2
    copy = tmp_path / "copy.jsonl"
    shutil.copy(shards[0], copy)
    for pair, named in (((shards[0], copy), expected[0]), ((shards[0], shards[0]), shards[0].name)):
        dup = subprocess.run([sys.executable, "-m", "trim_rl.data", "merge", tmp_path / "dup.jsonl", *pair], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert dup.returncode == 2 and named in dup.stderr and not (tmp_path / "dup.jsonl").exists()

    # a few PPO steps on the merged trees, with the README's train.py
    env_yaml = tmp_path / "collected.yaml"
    env_yaml.write_text(yaml.safe_dump({"name": "collected", "train": str(merged), "val": str(merged),
                                        "test": str(merged), "lam": 1e-3, "lam_grid": [1e-3]}))
    tr = subprocess.run([sys.executable, "train.py", "--env", str(env_yaml), "--runs", str(tmp_path / "runs"),
                         "--hyperparams", "total_timesteps:256", "eval_freq:128", "n_envs:4", "n_steps:32",
                         "batch_size:64", "n_epochs:1"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert tr.returncode == 0, tr.stderr
    run = next((tmp_path / "runs").rglob("config.yml")).parent
    assert (run / "model.zip").exists() and list((run / "tb").rglob("events.out.tfevents.*"))
