"""train.py end to end in subprocesses: run folder, TensorBoard events, resume, lambda grid."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[2]


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def run_dirs(root: Path):
    return sorted(p for p in root.glob("*/*") if p.is_dir())


def test_help_lists_every_flag():
    r = run("--help")
    assert r.returncode == 0
    for flag in ("--agent", "--env", "--lam", "--lam-grid", "--hyperparams", "--seed", "--resume", "--runs",
                 "--workers", "--verbose", "--no-progress"):
        assert flag in r.stdout


def test_train_one_budget_run_folder_and_tensorboard(tiny_env, tiny_args, tmp_path):
    r = run("--agent", "agents/trim_agg.yaml", "--env", str(tiny_env), "--lam", "8e-4", "--seed", "3",
            "--runs", str(tmp_path), "--hyperparams", *tiny_args)
    assert r.returncode == 0, r.stderr[-3000:]
    (d,) = run_dirs(tmp_path)
    assert d.parent.name == "trim_agg" and d.name.startswith("tiny__0.0008__3__")
    for f in ("config.yml", "command.txt", "git_hash.txt", "model.zip", "best_model.zip", "best.json"):
        assert (d / f).exists(), f
    cfg = yaml.safe_load((d / "config.yml").read_text())
    assert cfg["lam"] == 8e-4 and cfg["seed"] == 3 and cfg["agent"]["total_timesteps"] == 1024
    assert "train.py" in (d / "command.txt").read_text()
    events = list((d / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(d / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("rollout/accuracy", "rollout/cost_pct", "rollout/interventions", "rollout/episode_reward",
                "rollout/lambda", "val/accuracy", "val/cost_pct", "val/interventions", "val/score",
                "train/value_loss", "train/policy_gradient_loss", "train/entropy_loss"):
        assert tag in tags, tag
    assert all(0.0 <= e.value <= 1.0 for e in acc.Scalars("val/accuracy"))
    # the progress bar on stderr ends at the full step count with the last validation figures
    last = [line for line in r.stderr.replace("\r", "\n").splitlines() if "trim_agg lambda=0.0008" in line][-1]
    assert "1.02k/1.02k" in last and "val_score=" in last and "val_cost=" in last, last
    rows = [row for row in csv.DictReader((d / "tb" / "progress.csv").open()) if row.get("val/score")]
    assert f"val_score={float(rows[-1]['val/score']):.3f}" in last, last


def test_no_progress_keeps_stderr_quiet(tiny_env, tiny_args, tmp_path):
    r = run("--env", str(tiny_env), "--runs", str(tmp_path), "--no-progress", "--hyperparams", *tiny_args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "step/s" not in r.stderr and "val_score" not in r.stderr
    assert r.stdout.startswith("run: ")


def test_resume_continues_the_run(tiny_env, tiny_args, tmp_path):
    r = run("--env", str(tiny_env), "--runs", str(tmp_path), "--hyperparams", *tiny_args)
    assert r.returncode == 0, r.stderr[-3000:]
    (d,) = run_dirs(tmp_path)
    r = run("--resume", str(d), "--hyperparams", "total_timesteps:2048")
    assert r.returncode == 0, r.stderr[-3000:]
    assert run_dirs(tmp_path) == [d]
    cfg = yaml.safe_load((d / "config.yml").read_text())
    assert cfg["agent"]["total_timesteps"] == 2048
    stats = json.loads((d / "train_stats.json").read_text())
    assert stats["timesteps"] >= 2048


def test_lam_grid_one_run_per_budget(tiny_env, tiny_args, tmp_path):
    r = run("--env", str(tiny_env), "--runs", str(tmp_path), "--lam-grid", "--workers", "2",
            "--hyperparams", *tiny_args)
    assert r.returncode == 0, r.stderr[-3000:]
    lams = sorted(d.name.split("__")[1] for d in run_dirs(tmp_path))
    assert lams == ["0.0005", "0.002"]


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("obs: agg\nnot_a_key: 1\n")
    r = run("--agent", str(bad))
    assert r.returncode != 0
    assert "not_a_key" in r.stderr and str(bad) in r.stderr
