"""Train one MaskablePPO routing policy into a run folder (config, command, git hash, TensorBoard
events, SB3 zip for resuming, best model by validation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from trim_rl.data.trees import atomic_output


def git_hash() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[2])
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_dir_for(root: Path, agent: dict, env: dict, lam: float, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    lam_s = "bc" if agent.get("budget_conditioned") else f"{lam:g}"
    base = root / agent["name"] / f"{env['name']}__{lam_s}__{seed}__{stamp}"
    d, i = base, 1
    while d.exists():
        d = Path(f"{base}-{i}")
        i += 1
    return d


def _write(path: Path, text: str) -> None:
    with atomic_output(path, "w") as fh:
        fh.write(text)


def train_one(agent: dict, env: dict, lam: float, seed: int, runs_root: str | Path = "runs",
              resume: str | Path | None = None, verbose: int = 0, command: str | None = None,
              overrides: list[str] | None = None, progress: bool = False) -> Path:
    """Train (or resume) one policy; returns its run folder.  ``progress`` shows a tqdm bar over env
    steps on stderr with the latest validation figures."""
    import numpy as np
    import torch
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.utils import set_random_seed

    from trim_rl.agents.ppo import SeqTransformerExtractor
    from trim_rl.data.flat import load_flat
    from trim_rl.envs.vec_env import RoutingVecEnv
    from trim_rl.sim.bundled import resolve_tree_spec
    from trim_rl.train.callbacks import (LambdaWarmupCallback, ProgressCallback, RolloutMetricsCallback,
                                         ValidationCallback)

    torch.set_num_threads(1)
    if resume is not None:
        run_dir = Path(resume)
        cfg = yaml.safe_load((run_dir / "config.yml").read_text())
        if overrides:
            from trim_rl.train.config import apply_overrides

            cfg["agent"] = apply_overrides(cfg["agent"], overrides)
            _write(run_dir / "config.yml", yaml.safe_dump(cfg, sort_keys=False))
        agent, env, lam, seed = cfg["agent"], cfg["env"], cfg["lam"], cfg["seed"]
    else:
        run_dir = run_dir_for(Path(runs_root), agent, env, lam, seed)
        run_dir.mkdir(parents=True)
        cfg = {"agent": agent, "env": env, "lam": lam, "seed": seed, "git": git_hash(),
               "python": sys.version.split()[0], "torch": str(torch.__version__)}
        _write(run_dir / "config.yml", yaml.safe_dump(cfg, sort_keys=False))
        _write(run_dir / "git_hash.txt", cfg["git"] + "\n")
    _write(run_dir / "command.txt", (command or " ".join([sys.executable, *sys.argv])) + "\n")

    set_random_seed(seed)
    train = load_flat(*resolve_tree_spec(env["train"]))
    val = load_flat(*resolve_tree_spec(env["val"]))
    bc = bool(agent.get("budget_conditioned", False))
    lam_range = tuple(agent.get("lam_range", [1e-4, 1e-2]))
    venv = RoutingVecEnv(train, num_envs=int(agent.get("n_envs", 64)), lam=lam, obs=agent["obs"],
                         budget_conditioned=bc, lam_range=lam_range)
    venv.seed(seed)
    hp = dict(agent.get("hyperparams", {}))
    pk = dict(agent.get("policy_kwargs", {}))
    policy_kwargs = {"net_arch": pk.get("net_arch", [64, 64]),
                     "activation_fn": {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[pk.get("activation", "tanh")]}
    if agent["obs"] == "seq":
        policy_kwargs["features_extractor_class"] = SeqTransformerExtractor
        policy_kwargs["features_extractor_kwargs"] = dict(pk.get("encoder", {}))
    total = int(agent.get("total_timesteps", 200_000))
    if resume is not None and (run_dir / "model.zip").exists():
        # our own run folder's SB3 zip (trusted: written by this package)
        model = MaskablePPO.load(run_dir / "model.zip", env=venv, device="cpu")
        done = int(model.num_timesteps)
    else:
        model = MaskablePPO("MlpPolicy", venv, policy_kwargs=policy_kwargs, seed=seed, verbose=verbose, device="cpu",
                            **hp)
        done = 0
        p0 = float(agent.get("initial_regen_prob", 0.5))
        if agent.get("init_from"):
            from trim_rl.train.warm_start import load_actor

            load_actor(model, agent["init_from"], agent)
        elif p0 != 0.5:  # start from a policy that regenerates rarely (see README: PPO training notes)
            with torch.no_grad():
                model.policy.action_net.bias.copy_(torch.tensor([0.0, float(np.log(p0 / (1.0 - p0)))]))
    fmt = ["tensorboard", "csv"] + (["stdout"] if verbose else [])
    model.set_logger(configure(str(run_dir / "tb"), fmt))
    lams = env.get("lam_grid", [lam]) if bc else [lam]
    validation = ValidationCallback(val, lams, run_dir, int(agent.get("eval_freq", 20_000)), agent["obs"], bc)
    callbacks = [RolloutMetricsCallback(float(train.strong_only_tokens.mean())), validation]
    if progress:
        callbacks.append(ProgressCallback(total, f"{agent['name']} lambda={lam:g}" if not bc else agent["name"],
                                          validation))
    warm = agent.get("lam_warmup")
    if warm:
        callbacks.append(LambdaWarmupCallback(lam, total, float(warm.get("start", 0.25)), float(warm.get("fraction", 0.5)),
                                              lam_range if bc else None))
    remaining = max(0, total - done)
    t0 = time.time()
    if remaining:
        model.learn(total_timesteps=remaining, callback=callbacks, reset_num_timesteps=done == 0,
                    progress_bar=False)
    model.save(run_dir / "model.zip")
    stats = {"timesteps": int(model.num_timesteps), "seconds": round(time.time() - t0, 1),
             "env_steps_per_s": round(remaining / max(time.time() - t0, 1e-9), 1)}
    _write(run_dir / "train_stats.json", json.dumps(stats, indent=1) + "\n")
    venv.close()
    return run_dir


def _worker(args):
    agent, env, lam, seed, runs_root, command = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return str(train_one(agent, env, lam, seed, runs_root, command=command))


def train_grid(agent: dict, env: dict, lams: list[float], seed: int, runs_root: str | Path = "runs",
               workers: int | None = None, command: str | None = None, progress: bool = True) -> list[Path]:
    """One policy per lambda, one process per budget (at most ``workers`` at a time)."""
    import multiprocessing as mp

    from tqdm import tqdm

    workers = workers or min(len(lams), os.cpu_count() or 1)
    jobs = [(agent, env, lam, seed, str(runs_root), command) for lam in lams]
    out = []
    if workers <= 1:
        for j in tqdm(jobs, desc="budgets", unit="policy", disable=not progress):
            out.append(Path(_worker(j)))
        return out
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        bar = tqdm(pool.imap(_worker, jobs), total=len(jobs), desc="budgets", unit="policy", disable=not progress)
        for p in bar:
            out.append(Path(p))
    return out
