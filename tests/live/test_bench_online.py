"""``python -m trim_rl.bench online``: its measurements on a small scale (what they count, not how fast)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

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


TINY = dict(max_steps=128, eval_every=64, hyperparams=("n_envs:4", "n_steps:16", "batch_size:32", "n_epochs:2"),
            strong_ref_problems=8)


def test_problems_to_reach_returns_a_seeded_curve_and_the_generations_either_way():
    from trim_rl.live.bench_online import budget_tolerance, problems_to_reach, reach_lines

    r = problems_to_reach(**TINY)
    lines = reach_lines(r)
    assert len(lines) == 2 + len(r["curve"]) + 1 and "not reached within" in lines[-1]
    assert r["budget"] == 16 and r["tolerance"] == budget_tolerance(16) == pytest.approx(3.2)
    assert budget_tolerance(5) == 3
    t = r["target"]
    assert 0.5 < t["accuracy"] < 0.7 and 14 < t["cost_pct"] < 19 and 0 < t["se"] < 0.02
    assert [p["env_steps"] for p in r["curve"]] == [64, 128]
    for a, b in zip(r["curve"], r["curve"][1:]):
        assert a["episodes"] <= b["episodes"] and a["problems"] <= b["problems"] and a["generations"] < b["generations"]
    last = r["curve"][-1]
    # the problems: finished episodes, the 4 in flight, the 8 solved strong-only for the budget's unit
    assert last["problems"] == last["episodes"] + 4 + 8 and r["problems"] == last["problems"]
    # a generation a decision at least (each env step keeps or regenerates a weak draft)
    assert r["online_generations"] == last["generations"] >= last["env_steps"]
    assert r["tree_generations"] == pytest.approx(r["problems"] * r["tree_generations_per_problem"])
    assert r["ratio"] == pytest.approx(r["tree_generations"] / r["online_generations"])
    assert not r["reached"] and r["gap"] is not None and r["message"].startswith("not reached within")
    # seeded: the same curve again (but for the wall clock)
    again = problems_to_reach(**TINY)
    assert [{k: v for k, v in p.items() if k != "wall_s"} for p in again["curve"]] == \
        [{k: v for k, v in p.items() if k != "wall_s"} for p in r["curve"]]


def test_a_reachable_target_is_reported_reached_and_training_stops_there():
    from trim_rl.live.bench_online import problems_to_reach

    # a 5% checkpoint's accuracy with a 50% budget's room: the first policy PPO makes (it regenerates
    # freely) reaches it
    r = problems_to_reach(REPO / "checkpoints" / "trim_agg" / "trim_agg_b5", 50, **{**TINY, "max_steps": 640})
    assert r["reached"] and r["gap"] is None and r["message"].startswith("reached after")
    assert len(r["curve"]) < 10 and r["problems"] == r["curve"][-1]["problems"]
    p = r["curve"][-1]
    assert p["accuracy"] >= r["target"]["accuracy"] - r["target"]["se"] and p["cost_pct"] <= 60


def test_bench_online_refuses_less_than_one_rollout_from_scratch(capsys):
    from trim_rl.bench import main

    with pytest.raises(SystemExit) as exc:
        main(["online", "--scratch-steps", "100"])
    assert exc.value.code == 2
    assert "--scratch-steps: expected 0 (skip) or at least 2048" in capsys.readouterr().err
