"""train.py end to end in subprocesses: budgets, run folders, TensorBoard, resume, grids, refused inputs."""

import csv
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow



def run(*args, cwd=REPO, timeout=600):
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def run_dirs(root: Path):
    return sorted(p for p in root.glob("*/*") if p.is_dir())


def flags_in(help_text: str) -> set[str]:
    """Option strings as whole tokens (``--lam`` is not found inside ``--lam-grid``)."""
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)(?![\w-])", help_text))


def tags(d: Path) -> set[str]:
    acc = EventAccumulator(str(d / "tb"))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_help_lists_every_flag():
    r = run("--help")
    assert r.returncode == 0
    want = {"--agent", "--env", "--budget", "--budget-grid", "--lam", "--lam-grid", "--hyperparams", "--seed",
            "--resume", "--init-from", "--runs", "--workers", "--verbose", "--no-progress"}
    assert want <= flags_in(r.stdout), want - flags_in(r.stdout)


def test_a_budget_run_folder_records_each_stage(tiny_env, tiny_args, tmp_path):
    r = run("--env", str(tiny_env), "--budget", "12", "--seed", "3", "--runs", str(tmp_path), "--hyperparams", *tiny_args)
    assert r.returncode == 0, r.stderr[-3000:]
    (d,) = run_dirs(tmp_path)
    assert d.parent.name == "trim_agg" and d.name.startswith("tiny__b12__3__")
    for f in ("config.yml", "command.txt", "git_hash.txt", "model.zip", "state.json", "best_model.zip", "best.json",
              "result.json", "policy/policy.json", "policy/model.safetensors", "stages/policy_iteration/policy.json"):
        assert (d / f).exists(), f
    cfg = yaml.safe_load((d / "config.yml").read_text())
    res = json.loads((d / "result.json").read_text())
    assert cfg["target"] == {"budget": 12.0, "lam": None} and cfg["seed"] == 3
    assert cfg["agent"]["recipe"] == ["policy_iteration", "ppo"] and cfg["agent"]["total_timesteps"] == 1024
    assert cfg["result"]["requested_budget"] == 12.0 and cfg["result"]["lam"] == res["lam"] > 0
    assert abs(res["calib_cost_pct"] - 12.0) < 6.0  # 12 val trees: the nearest spend they allow
    meta = json.loads((d / "policy" / "policy.json").read_text())
    assert meta["family"] == "TRIM-Agg" and meta["recipe"]["stages"] == ["policy_iteration", "ppo"]
    assert meta["budget"]["requested"] == 12.0 and meta["budget"]["lam"] == res["lam"]
    assert meta["budget"]["calib_cost_pct"] == res["calib_cost_pct"]
    t = tags(d)
    for tag in ("policy_iteration/cost_pct", "policy_iteration/accuracy", "policy_iteration/lambda",
                "rollout/accuracy", "rollout/cost_pct", "val/accuracy", "val/cost_pct", "val/score", "val/offset",
                "train/value_loss", "budget/requested", "budget/lambda", "budget/calib_cost_pct", "budget/val_cost_pct"):
        assert tag in t, tag
    # the stage bars on stderr: policy iteration rounds, then PPO to the full step count
    err = r.stderr.replace("\r", "\n")
    assert "policy iteration: 100%" in err and "2/2" in err
    last = [line for line in err.splitlines() if "PPO trim_agg b12" in line][-1]
    assert "1.02k/1.02k" in last and "val_acc=" in last and "val_cost=" in last, last


def test_same_seed_same_bytes(tiny_env, tiny_args, tmp_path):
    digests = []
    for i in range(2):
        r = run("--env", str(tiny_env), "--budget", "8", "--runs", str(tmp_path / str(i)), "--no-progress",
                "--hyperparams", *tiny_args)
        assert r.returncode == 0, r.stderr[-3000:]
        (d,) = run_dirs(tmp_path / str(i))
        digests.append(hashlib.sha256((d / "policy" / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_a_price_run_from_scratch_is_its_own_family(tiny_env, tiny_args, tmp_path):
    r = run("--agent", "trim_agg_scratch", "--env", str(tiny_env), "--lam", "8e-4", "--runs", str(tmp_path),
            "--no-progress", "--hyperparams", *tiny_args[:6])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("run: ") and "step/s" not in r.stderr
    (d,) = run_dirs(tmp_path)
    assert d.name.startswith("tiny__0.0008__0__") and not (d / "stages").exists()
    meta = json.loads((d / "policy" / "policy.json").read_text())
    assert meta["family"] == "TRIM-Agg (PPO from scratch)" and meta["lam"] == 8e-4 and meta["budget"] is None


def test_interrupted_run_resumes_where_it_stopped(tiny_env, tiny_args, tmp_path):
    args = [*tiny_args[1:], "total_timesteps:400000", "eval_freq:2048"]
    p = subprocess.Popen([sys.executable, "train.py", "--env", str(tiny_env), "--budget", "10", "--runs", str(tmp_path),
                          "--no-progress", "--hyperparams", *args], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.glob("*/*/state.json")):
        time.sleep(0.5)
    time.sleep(2)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130, err[-3000:]
    (d,) = run_dirs(tmp_path)
    assert f"resume with: train.py --resume {d}" in err and "Traceback" not in err
    done = json.loads((d / "state.json").read_text())["timesteps"]
    assert 0 < done < 400000 and not (d / "policy").exists()
    rows_before = list(csv.DictReader((d / "tb" / "progress.csv").open()))
    assert not [f for f in d.iterdir() if f.name.startswith(".") and f.name != ".lock"] and not (d / ".lock").exists()
    # a damaged state is refused by name and the run's records stay as they were
    import shutil

    broken = tmp_path / "broken" / d.name
    shutil.copytree(d, broken)
    (broken / "model.zip").write_bytes(b"not a zip")
    records = {f: (broken / f).read_bytes() for f in ("config.yml", "command.txt", "state.json")}
    r = run("--resume", str(broken), "--no-progress", "--hyperparams", "total_timesteps:999999")
    assert r.returncode == 2 and f"{broken / 'model.zip'}: damaged (not a zip file)" in r.stderr, r.stderr[-2000:]
    assert {f: (broken / f).read_bytes() for f in records} == records
    r = run("--resume", str(d), "--no-progress", "--hyperparams", f"total_timesteps:{done + 1024}")
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((d / "state.json").read_text())
    assert state["timesteps"] >= done + 1024 and (d / "policy" / "policy.json").exists()
    rows_after = list(csv.DictReader((d / "tb" / "progress.csv").open()))
    assert len(rows_after) > len(rows_before)  # the rows before the resume point are kept
    steps = [int(r["time/total_timesteps"]) for r in rows_after if r.get("time/total_timesteps")]
    assert steps == sorted(steps) and steps[-1] >= done + 1024 and min(steps) < done


def test_resume_refuses_a_run_without_state(tiny_env, tmp_path):
    d = tmp_path / "trim_agg" / "x"
    d.mkdir(parents=True)
    (d / "config.yml").write_text(yaml.safe_dump({"agent": {"name": "trim_agg"}, "env": {"name": "tiny"},
                                                  "target": {"budget": 10.0, "lam": None}, "seed": 0}))
    before = (d / "config.yml").read_text()
    r = run("--resume", str(d), "--hyperparams", "total_timesteps:5000")
    assert r.returncode == 2 and "no saved training state" in r.stderr and "Traceback" not in r.stderr
    assert (d / "config.yml").read_text() == before and sorted(p.name for p in d.iterdir()) == ["config.yml"]


def test_budget_grid_one_run_per_budget(tiny_env, tiny_args, tmp_path):
    r = run("--env", str(tiny_env), "--runs", str(tmp_path), "--budget-grid", "--workers", "2", "--hyperparams", *tiny_args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(d.name.split("__")[1] for d in run_dirs(tmp_path)) == ["b20", "b5"]


def test_a_failing_budget_leaves_the_others(tiny_env, tiny_args, monkeypatch, tmp_path):
    import trim_rl.training.run as run_mod
    from trim_rl.training.config import load_agent, load_env

    real = run_mod.train_one

    def flaky(agent, env, target, *a, **k):
        if target.budget == 5.0:
            raise RuntimeError("disk full")
        return real(agent, env, target, *a, **k)

    monkeypatch.setattr(run_mod, "train_one", flaky)
    agent = load_agent(REPO / "agents" / "trim_agg.yaml", tiny_args)
    env = load_env(tiny_env)
    res = run_mod.train_grid(agent, env, [run_mod.Target(budget=5.0), run_mod.Target(budget=20.0)], 0, tmp_path,
                             workers=1, progress=False)
    assert res[0].error == "RuntimeError: disk full" and res[0].run_dir is None
    assert res[1].error is None and (res[1].run_dir / "policy" / "policy.json").exists()


@pytest.mark.parametrize("flags, message", [
    (["--budget", "400"], r"--budget: 400\.0 is outside the feasible range on the calibration trees .*: more than 0 "
                          r"and at most \d+\.\d"),
    (["--budget", "-2"], r"--budget: -2\.0 is outside the feasible range"),
    (["--budget-grid", "5", "900"], r"--budget-grid: 900\.0 is outside the feasible range"),
    (["--lam=-1e-3"], r"--lam: expected a price > 0, got -0\.001"),
    (["--lam", "nan"], r"--lam: expected a price > 0, got nan"),
    (["--budget", "5", "--lam", "1e-3"], r"--budget and --lam: choose one"),
    (["--hyperparams", "learning_rate:fast"], r"hyperparams\.learning_rate: expected a valid float, got 'fast'"),
    (["--hyperparams", "n_envs:0"], r"n_envs: expected an integer >= 1, got 0"),
    (["--hyperparams", "policy_iteration.roundz:3"], r"policy_iteration\.roundz: unknown key"),
    (["--agent", "agents/none.yaml"], r"agents/none\.yaml: no such config file"),
])
def test_bad_inputs_are_one_line_and_write_nothing(tiny_env, tmp_path, flags, message):
    r = run("--env", str(tiny_env), "--runs", str(tmp_path / "runs"), *flags)
    assert r.returncode == 2, r.stderr[-2000:]
    assert re.search(message, r.stderr), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("yaml_text, message", [
    ("obs: agg\nnot_a_key: 1\n", r"bad\.yaml: not_a_key: unknown key"),
    ("algo: dqn\n", r"bad\.yaml: algo: expected one of 'maskable_ppo', 'pomdp', got 'dqn'"),
    ("hyperparams: {learning_rate: 3e-4, n_steps: 2.5}\n", r"hyperparams\.n_steps: expected a valid int, got 2\.5"),
    ("recipe: [ppo, policy_iteration]\n", r"recipe: stages run in the order"),
    ("policy_kwargs: {net_arch: [64, 0]}\n", r"policy_kwargs\.net_arch: expected a non-empty list of layer sizes"),
    ("fit: {n_bins: 20}\n", r"fit: not a key of algo 'maskable_ppo'"),
    ("obs: [agg\n", r"bad\.yaml:\d+: not valid YAML"),
])
def test_bad_agent_yaml_is_named_with_its_key(tiny_env, tmp_path, yaml_text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    r = run("--agent", str(bad), "--env", str(tiny_env), "--runs", str(tmp_path / "runs"))
    assert r.returncode == 2 and re.search(message, r.stderr), r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()


def test_yaml_numbers_are_read_as_yaml_1_2(tmp_path):
    from trim_rl.training.config import load_agent

    p = tmp_path / "a.yaml"
    p.write_text("hyperparams: {learning_rate: 3e-4, ent_coef: 1e-2}\nlam_range: [5e-4, 6e-3]\n")
    a = load_agent(p)
    assert a.hyperparams["learning_rate"] == 3e-4 and a.lam_range == [5e-4, 6e-3]


def test_a_run_that_died_before_its_export_is_completed_by_resume(tiny_env, tiny_args, tmp_path, monkeypatch):
    import trim_rl.training.recipe as recipe
    from trim_rl.training.config import load_agent, load_env
    from trim_rl.training.run import Target, train_one

    def killed(*a, **k):  # the process dies once PPO has finished, before the policy is written
        raise RuntimeError("killed")

    monkeypatch.setattr(recipe, "_finish", killed)
    with pytest.raises(RuntimeError, match="killed"):
        train_one(load_agent(REPO / "agents" / "trim_agg.yaml", tiny_args), load_env(tiny_env), Target(budget=10.0),
                  0, tmp_path)
    (d,) = run_dirs(tmp_path)
    assert (d / "state.json").exists() and not (d / "policy").exists() and not (d / ".lock").exists()
    r = run("--resume", str(d), "--no-progress")
    assert r.returncode == 0 and r.stdout.strip() == f"run: {d}", r.stderr[-3000:]
    assert (d / "policy" / "policy.json").exists() and (d / "result.json").exists()
    assert yaml.safe_load((d / "config.yml").read_text())["result"]["requested_budget"] == 10.0
    # resuming the finished run changes nothing and says so in one line
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    r = run("--resume", str(d), "--no-progress")
    assert r.returncode == 0 and "already finished" in r.stdout and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len((r.stdout + r.stderr).strip().splitlines()) == 1, r.stdout + r.stderr
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before
