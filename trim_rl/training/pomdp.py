"""Train TRIM-POMDP (``algo: pomdp``): fit the model on the training trees once, solve it for every
target, and write one run folder per target (config.yml, command.txt, git_hash.txt, the policy
artifact policy.json + policy.npz, validation.json, result.json); a folder stopped before its
result.json (Ctrl-C, an error) is removed.

A budget is met by bisection on the price: each try solves the POMDP (about a second) and plays
the policy on the calibration trees.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from trim_rl.evaluation.rollout import rollout
from trim_rl.fsutil import write_json, write_text
from trim_rl.sim.bundled import generate_trees, load_trees
from trim_rl.training.budget import check_budget
from trim_rl.training.config import EnvConfig, PomdpAgentConfig, config_dict
from trim_rl.training.policy_iteration import bisect_monotone
from trim_rl.training.run import git_hash, new_run_dir, write_run_record


def train_pomdp(agent: PomdpAgentConfig, env: EnvConfig, targets: list, seed: int = 0, runs_root: str | Path = "runs",
                command: str | None = None, progress: bool = True) -> list[Path]:
    """One run folder per target under ``runs_root/<agent name>/``; returns them in order.

    Nothing is random, so ``seed`` is only recorded (the same config gives the same tables)."""
    # trim_rl.agents.pomdp imports scipy
    from trim_rl.agents.pomdp.fit import fit_model
    from trim_rl.agents.pomdp.policy import POMDPPolicy
    from trim_rl.agents.pomdp.solver import solve

    t0 = time.perf_counter()
    generate_trees(env.train, env.calib_spec, env.val if agent.validate else None, progress=progress)
    train = load_trees(env.train, progress)
    calib = load_trees(env.calib_spec, progress)
    val = load_trees(env.val, progress) if agent.validate else None
    for t in targets:  # every budget checked before anything is written
        if t.budget is not None:
            check_budget(t.budget, calib, "--budget", f"the calibration trees ({env.calib_spec})")
    model = fit_model(train, **vars(agent.fit), source=str(env.train))
    fit_s = time.perf_counter() - t0
    cfg_solver = agent.solver
    ref = float(calib.strong_only_tokens.sum())

    def cost_at(lam: float) -> float:
        rec = rollout(POMDPPolicy(model, solve(model, lam, cfg_solver)), calib, lam=lam)
        return float(100.0 * rec.strong_tokens.sum() / ref)

    from tqdm import tqdm

    bar = tqdm(total=len(targets), desc="budgets", unit="policy", file=sys.stderr, disable=not progress)
    out = []
    for target in targets:
        t1 = time.perf_counter()
        result = {"requested_budget": target.budget, "calib_trees": str(env.calib_spec)}
        if target.budget is not None:
            lam, cost = bisect_monotone(cost_at, float(target.budget), 1e-5, 0.1, steps=18)
            result["calib_cost_pct"] = cost
        else:
            lam = float(target.lam)
        result["lam"] = lam
        run_dir = new_run_dir(Path(runs_root), agent, env, target, seed)
        try:
            cfg = {"agent": config_dict(agent), "env": config_dict(env), "target": target.to_dict(), "seed": seed,
                   "git": git_hash(), "versions": {"python": sys.version.split()[0], "numpy": np.__version__}}
            write_run_record(run_dir, cfg, command)
            sol = solve(model, lam, cfg_solver)
            policy = POMDPPolicy(model, sol)
            validation = None
            if val is not None:
                rec = rollout(policy, val, lam=lam)
                validation = {"split": str(env.val), "accuracy": float(rec.correct.mean()),
                              "cost_pct": float(100.0 * rec.strong_tokens.sum() / val.strong_only_tokens.sum()),
                              "score": float(rec.correct.mean() - lam * rec.strong_tokens.mean()),
                              "interventions": float(rec.interventions.mean())}
                write_json(run_dir / "validation.json", validation)
                result.update(val_accuracy=validation["accuracy"], val_cost_pct=validation["cost_pct"])
            budget = None if target.budget is None else {"requested": target.budget, "lam": lam,
                                                         "calib_cost_pct": result.get("calib_cost_pct"),
                                                         "val_cost_pct": result.get("val_cost_pct"),
                                                         "calib_trees": str(env.calib_spec)}
            policy.save(run_dir, extra_meta={
                "source": {"run": str(run_dir), "git": cfg["git"], "seed": seed, "env": env.name, "train": env.train},
                "validation": validation, "budget": budget,
                "recipe": {"name": "POMDP fit + value iteration", "stages": ["fit", "solve"]}})
            write_json(run_dir / "result.json", result)
            write_text(run_dir / "config.yml", yaml.safe_dump({**cfg, "result": result}, sort_keys=False))
            write_json(run_dir / "train_stats.json", {"fit_seconds": round(fit_s, 3), "solve_seconds": round(sol.seconds, 3),
                                                      "seconds": round(time.perf_counter() - t1, 3)})
        except BaseException:
            if not (run_dir / "result.json").exists():  # half a run folder is of no use to anyone
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        out.append(run_dir)
        bar.update(1)
    bar.close()
    return out
