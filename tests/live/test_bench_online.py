"""``python -m trim_rl.bench online``: its two measurements on a small scale (what they count, not how fast)."""

from __future__ import annotations

import pytest

pytest.importorskip("uvicorn")


def test_generations_per_problem_count_a_tree_against_one_episode(tmp_path):
    from trim_rl.data.flat import load_flat
    from trim_rl.live.bench_online import generations_per_problem
    from trim_rl.sim.generate import generate_file

    path = tmp_path / "trees.jsonl.gz"
    generate_file("math500", "test", 3, path, limit=6, draws=2)
    f = load_flat(path)
    g = generations_per_problem(str(path))
    assert g["tree_generations"] == pytest.approx((f.n_nodes + f.strong_present.sum()) / f.n_trees)
    # an episode writes at least one step and at most a root-to-leaf path's steps and regenerations
    assert 1 <= g["online_generations"] <= 2 * (f.depth.max() + 1)
    assert g["ratio"] == pytest.approx(g["tree_generations"] / g["online_generations"]) and g["ratio"] > 1


def test_env_and_decode_both_step_every_problem_against_the_simulated_backend():
    from trim_rl.live.bench_online import env_vs_decode

    r = env_vs_decode(n_problems=6, envs=3, repeats=1)
    assert r["problems"] == 6 and r["env_steps_s"] > 0 and r["decode_steps_s"] > 0
    assert r["ratio"] == pytest.approx(r["env_steps_s"] / r["decode_steps_s"])
