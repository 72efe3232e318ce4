"""What train.py and trim_rl.train refuse up front: one line naming the flag, key or file, exit code 2,
and no run folder; and a training interrupted before it saved anything leaves no folder behind."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.conftest import REPO

POMDP_CK = next(p.parent for p in sorted((REPO / "checkpoints" / "trim_pomdp").rglob("policy.json")))


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def one_line(r, pattern: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout[-1000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.search(pattern, r.stderr), r.stderr


def env_yaml(tiny_env: Path, tmp_path: Path, drop=(), **changes) -> Path:
    data = {k: v for k, v in yaml.safe_load(tiny_env.read_text()).items() if k not in drop}
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump({**data, **changes}))
    return path


@pytest.mark.parametrize("flags, message", [
    (["--seed", "-1"], r"--seed: expected an integer in \[0, 4294967295\], got -1"),
    (["--seed", str(2**32)], r"--seed: expected an integer in \[0, 4294967295\], got 4294967296"),
    (["--seed", "1.5"], r"--seed: expected an integer in \[0, 4294967295\], got '1\.5'"),
    (["--budget-grid", "5", "20", "--workers", "0"], r"--workers: expected an integer >= 1, got 0"),
    (["--budget-grid", "5", "20", "5"], r"--budget-grid: 5 is given twice"),
    (["--lam-grid", "1e-3", "0.001"], r"--lam-grid: 0\.001 is given twice"),
    (["--lam", "1e300"], r"--lam: expected a price of at most 1 .*got 1e\+300"),
    (["--hyperparams", "policy_kwargs.net_arch:[200000,200000]"],
     r"trim_agg\.yaml: policy_kwargs\.net_arch: the ppo stage would need at least .* of memory .*more than this "
     r"machine's"),
    (["--hyperparams", "policy_iteration.samples:100000000000000"],
     r"policy_iteration\.samples: the policy iteration stage would need at least"),
    (["--hyperparams", "n_envs:1000000000", "n_steps:100000", "total_timesteps:100000000000000"],
     r"n_envs x hyperparams\.n_steps: the ppo stage would need at least"),
    (["--hyperparams", "n_envs:1", "n_steps:33", "batch_size:32"],
     r"hyperparams\.batch_size: a rollout of 33 steps .* leaves one of a single step"),
    (["--agent", "trim_pomdp", "--lam", "1e-3", "--hyperparams", "solver.simplex_grid:1000000"],
     r"trim_pomdp\.yaml: solver\.simplex_grid: the policy table stage would need at least .* of memory"),
    (["--lam", "1e-3", "--init-from", POMDP_CK],
     r"--init-from: .*policy\.json: a TRIM-POMDP checkpoint \(kind 'pomdp'\) has no network to start PPO from"),
    (["--runs", Path(__file__), "--budget", "10"], r"--runs: .*test_refusals\.py is a file, not a folder"),
    (["--resume="], r"--resume: expected a path or name, got ''"),
    (["--budget", "10", "--init-from="], r"--init-from: expected a path or name, got ''"),
    (["--budget", "10", "--agent="], r"--agent: expected a path or name, got ''"),
    (["--budget", "10", "--runs="], r"--runs: expected a path or name, got ''"),
    (["--budget", "10", "--hyperparams", "init_from:/x"], r"trim_agg\.yaml: init_from: the checkpoint replaces the "
                                                         r"earlier stages, so the recipe must be \[ppo\]"),
    (["--resume", "runs/x", "--seed", "3"], r"--seed: --resume continues a run with its own config"),
    (["--resume", "runs/x", "--agent", "trim_seq"], r"--agent: --resume continues a run with its own config"),
])
def test_a_bad_flag_is_one_line_naming_it_before_any_folder(tiny_env, tmp_path, flags, message):
    r = run("--env", tiny_env, "--runs", tmp_path / "runs", *flags) if "--resume" not in flags else run(*flags)
    one_line(r, message)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("drop, changes, message", [
    (["train"], {}, r"env\.yaml: train: missing; an env YAML names the trees to train on"),
    (["val"], {}, r"env\.yaml: val: missing; an env YAML names the held-out trees"),
    ([], {"train": []}, r"env\.yaml: train: expected a tree spec"),
    ([], {"budget_grid": [5, 10, 5]}, r"env\.yaml: budget_grid: expected a list of distinct budgets"),
    ([], {"lam": 3}, r"env\.yaml: lam: expected a price > 0 and at most 1"),
])
def test_an_env_yaml_names_its_trees_and_distinct_values(tiny_env, tmp_path, drop, changes, message):
    r = run("--env", env_yaml(tiny_env, tmp_path, drop, **changes), "--runs", tmp_path / "runs", "--budget", "10")
    one_line(r, message)
    assert not (tmp_path / "runs").exists()


def test_a_huge_network_in_an_agent_yaml_is_refused_by_file_and_key(tiny_env, tmp_path):
    agent = yaml.safe_load((REPO / "agents" / "trim_seq.yaml").read_text())
    agent["policy_kwargs"]["encoder"] = {"d_model": 65536, "n_heads": 4, "n_layers": 64, "dim_ff": 262144}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(agent))
    r = run("--agent", path, "--env", tiny_env, "--runs", tmp_path / "runs", "--budget", "10")
    one_line(r, r"big\.yaml: policy_kwargs\.encoder: the ppo stage would need at least")
    assert not (tmp_path / "runs").exists()


def test_the_memory_estimate_passes_the_shipped_agents_and_names_the_largest_key():
    from trim_rl.configs import ConfigError
    from trim_rl.training.checks import check_memory
    from trim_rl.training.config import load_agent

    for name in ("trim_agg", "trim_seq", "trim_agg_budget", "trim_agg_scratch"):
        check_memory(load_agent(REPO / "agents" / f"{name}.yaml"), name, available=2 * 10**9)
    agent = load_agent(REPO / "agents" / "trim_seq.yaml", ["recipe:[policy_iteration, distill, ppo]"])
    with pytest.raises(ConfigError, match=r"^x: distill\.samples: the distill stage would need at least"):
        check_memory(agent, "x", available=10**8)  # distillation's samples are its largest need
    agent = load_agent(REPO / "agents" / "trim_seq.yaml", ["seq_policy_iteration.samples:100000000"])
    with pytest.raises(ConfigError, match=r"^x: seq_policy_iteration\.samples: the seq policy iteration stage"):
        check_memory(agent, "x", available=2 * 10**9)


def test_the_api_refuses_alike_before_any_folder(tiny_env, tmp_path):
    import trim_rl

    runs = tmp_path / "runs"
    for kwargs, message in [({"seed": -1}, r"seed: expected an integer in \[0, 4294967295\], got -1"),
                            ({"seed": 2**40}, r"seed: expected an integer"),
                            ({"budget_grid": [5, 20], "workers": 0}, r"workers: expected an integer >= 1, got 0"),
                            ({"budget_grid": [5, 5]}, r"--budget-grid: 5 is given twice"),
                            ({"lam": 1e-3, "init_from": POMDP_CK}, r"a TRIM-POMDP checkpoint"),
                            ({"agent": "trim_pomdp", "init_from": POMDP_CK}, r"--init-from: applies to PPO agents")]:
        with pytest.raises(ValueError, match=message):
            trim_rl.train(kwargs.pop("agent", "trim_agg"), str(tiny_env), runs=runs, **kwargs)
        assert not runs.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_training_interrupted_at_once_leaves_no_folder(tiny_env, tmp_path, sig):
    runs = tmp_path / "runs"
    p = subprocess.Popen([sys.executable, "train.py", "--env", str(tiny_env), "--budget", "10", "--runs", str(runs),
                          "--no-progress", "--hyperparams", "policy_iteration.rounds:50"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs.glob("*/*")) and p.poll() is None:
        time.sleep(0.02)
    p.send_signal(sig)  # the run folder exists, its training has not saved anything yet
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130, err[-3000:]
    assert "interrupted before the run had saved anything to resume" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not runs.exists(), list(runs.rglob("*"))  # nor the folders made above it


def test_resume_names_a_damaged_state(tmp_path):
    d = tmp_path / "trim_agg" / "x"
    d.mkdir(parents=True)
    (d / "config.yml").write_text(yaml.safe_dump({"agent": {"name": "trim_agg"}, "env": {"name": "tiny"},
                                                  "target": {"budget": 10.0, "lam": None}, "seed": 0}))
    (d / "model.zip").write_bytes(b"")
    (d / "state.json").write_text("{not json")
    one_line(run("--resume", d), r"x/state\.json: damaged \(no readable timesteps\)")
    (d / "config.yml").write_text("- a list\n")
    one_line(run("--resume", d), r"x/config\.yml: not a config written by train\.py \(expected a mapping, got list\)")


def test_device_cuda_without_a_gpu_is_refused(tiny_env, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    r = run("--env", tiny_env, "--runs", tmp_path / "runs", "--budget", "10", "--hyperparams", "device:cuda")
    one_line(r, r"device: cuda, but torch sees no CUDA GPU")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override", ["policy_kwargs.net_arch:[32]", "policy_kwargs.activation:relu", "recipe:[ppo]",
                                      "lam_range:[1e-4,1e-2]"])
def test_resume_refuses_overrides_that_change_the_saved_network(tiny_env, tmp_path, override):
    from trim_rl.training.config import config_dict, load_agent, load_env

    d = tmp_path / "trim_agg" / "x"
    d.mkdir(parents=True)
    cfg = {"agent": config_dict(load_agent(REPO / "agents" / "trim_agg.yaml")), "env": config_dict(load_env(tiny_env)),
           "target": {"budget": 10.0, "lam": None}, "seed": 0}
    (d / "config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    before = (d / "config.yml").read_bytes()
    r = run("--resume", d, "--hyperparams", "total_timesteps:999999", override)
    key = override.split(":")[0].split(".")[0]
    one_line(r, rf"--hyperparams {key}: a resumed run keeps its {key}")
    assert (d / "config.yml").read_bytes() == before


def test_a_pomdp_run_stopped_before_its_result_leaves_no_folder(tiny_env, tmp_path, monkeypatch):
    import trim_rl.training.pomdp as pomdp
    from trim_rl.training.config import load_agent, load_env
    from trim_rl.training.context import Target

    def ctrl_c():  # Ctrl-C just after the run folder was made
        raise KeyboardInterrupt

    monkeypatch.setattr(pomdp, "git_hash", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        pomdp.train_pomdp(load_agent(REPO / "agents" / "trim_pomdp.yaml"), load_env(tiny_env), [Target(lam=1e-3)],
                          0, tmp_path / "runs", progress=False)
    assert not list((tmp_path / "runs").glob("*/*"))
