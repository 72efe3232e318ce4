"""Train TRIM-POMDP (``algo: pomdp``): fit the model on the training trees once, solve it for every
lambda, and write one run folder per lambda (config.yml, command.txt, git_hash.txt, the policy
artifact policy.json + policy.npz, validation.json)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import yaml

from trim_rl.train.run import _write, git_hash, run_dir_for


def train_pomdp(agent: dict, env: dict, lams: list[float], seed: int = 0, runs_root: str | Path = "runs",
                command: str | None = None, progress: bool = True) -> list[Path]:
    """One run folder per lambda under ``runs_root/<agent name>/``; returns them in ``lams`` order.

    The agent config's ``fit`` mapping goes to :func:`trim_rl.agents.pomdp.fit.fit_model` and
    ``solver`` to :class:`trim_rl.agents.pomdp.solver.SolverConfig`; nothing is random, so ``seed``
    is only recorded (the same config gives the same tables).
    """
    import numpy as np

    from trim_rl.agents.pomdp.fit import fit_model
    from trim_rl.agents.pomdp.policy import POMDPPolicy
    from trim_rl.agents.pomdp.solver import SolverConfig, solve
    from trim_rl.data.flat import load_flat
    from trim_rl.eval.rollout import rollout
    from trim_rl.sim.bundled import resolve_tree_spec

    t0 = time.perf_counter()
    train = load_flat(*resolve_tree_spec(env["train"]))
    model = fit_model(train, **dict(agent.get("fit") or {}), source=str(env["train"]))
    fit_s = time.perf_counter() - t0
    val = load_flat(*resolve_tree_spec(env["val"])) if env.get("val") and agent.get("validate", True) else None
    cfg_solver = SolverConfig(**dict(agent.get("solver") or {}))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(lams), desc="budgets", unit="policy", file=sys.stderr)
    out = []
    for lam in lams:
        lam = float(lam)
        run_dir = run_dir_for(Path(runs_root), agent, env, lam, seed)
        run_dir.mkdir(parents=True)
        cfg = {"agent": agent, "env": env, "lam": lam, "seed": seed, "git": git_hash(),
               "python": sys.version.split()[0], "numpy": np.__version__}
        _write(run_dir / "config.yml", yaml.safe_dump(cfg, sort_keys=False))
        _write(run_dir / "git_hash.txt", cfg["git"] + "\n")
        _write(run_dir / "command.txt", (command or " ".join([sys.executable, *sys.argv])) + "\n")
        sol = solve(model, lam, cfg_solver)
        policy = POMDPPolicy(model, sol)
        validation = None
        if val is not None:
            rec = rollout(policy, val, lam=lam)
            validation = {"split": str(env["val"]), "accuracy": float(rec.correct.mean()),
                          "cost_pct": float(100.0 * rec.strong_tokens.sum() / val.strong_only_tokens.sum()),
                          "score": float(rec.correct.mean() - lam * rec.strong_tokens.mean()),
                          "interventions": float(rec.interventions.mean())}
            _write(run_dir / "validation.json", json.dumps(validation, indent=1) + "\n")
        policy.save(run_dir, extra_meta={
            "source": {"run": str(run_dir), "git": cfg["git"], "seed": seed, "env": env.get("name"),
                       "train": str(env["train"])},
            "validation": validation})
        stats = {"fit_seconds": round(fit_s, 3), "solve_seconds": round(sol.seconds, 3)}
        _write(run_dir / "train_stats.json", json.dumps(stats, indent=1) + "\n")
        out.append(run_dir)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out
