"""Online PPO against a real llama.cpp ``llama-server`` with SmolLM2-135M (weak and strong the same
model, sampled differently) and the self-verify scorer: the run finishes, writes TensorBoard events and
a checkpoint that the step-routing server loads."""

from __future__ import annotations

import pytest

from trim_rl.cli.train import main

pytestmark = pytest.mark.slow


def test_a_short_online_run_against_llama_server_writes_events_and_a_servable_checkpoint(llama_url, tmp_path):
    from trim_rl.live.serve.policies import load_served

    runs = tmp_path / "runs"
    rc = main(["--live", "--weak-url", llama_url, "--strong-url", llama_url, "--prm", "self-verify",
               "--problems", "gsm8k", "--lam", "1e-3", "--max-tokens", "16", "--live-option", "weak_temperature=0.7",
               "--max-interventions", "2", "--strong-ref-problems", "2", "--checkpoint-every", "8",
               "--runs", str(runs), "--no-progress",
               "--hyperparams", "n_envs:2", "n_steps:4", "batch_size:8", "n_epochs:1", "total_timesteps:8"])
    assert rc == 0
    (run,) = [p for p in (runs / "trim_agg").iterdir() if p.is_dir()]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "rollouts.jsonl").is_file() and (run / "policy" / "policy.json").is_file()
    served, default = load_served([f"online={run / 'policy'}"])
    assert default == "online" and served["online"].mode == "hybrid"
