"""The main job (``make demo``): train TRIM-Agg at every budget of the env YAML on the bundled
math500 trees, export the policies, and evaluate them next to TRIM-Thr, the baselines, the oracles
and the shipped checkpoints on the held-out test trees."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trim_rl.demo", description=__doc__)
    ap.add_argument("--out", default="reports/demo", help="output folder (default reports/demo)")
    ap.add_argument("--agent", default=str(ROOT / "agents" / "trim_agg.yaml"), help="agent YAML to train")
    ap.add_argument("--env", default=str(ROOT / "envs" / "math500.yaml"), help="env YAML (trees, lambda grid)")
    ap.add_argument("--timesteps", type=int, default=None, help="override total_timesteps per budget")
    ap.add_argument("--seed", type=int, default=0, help="training and evaluation seed (default 0)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the evaluation (default 1000)")
    ap.add_argument("--no-train", action="store_true", help="only evaluate (built-in policies and shipped checkpoints)")
    args = ap.parse_args(argv)

    from trim_rl.evaluate import main as evaluate_main

    out = Path(args.out)
    ckpts: list[str] = []
    if not args.no_train:
        from trim_rl.export import export_run
        from trim_rl.train.config import AGENT_KEYS, ENV_KEYS, apply_overrides, load_yaml
        from trim_rl.train.run import train_grid

        agent = load_yaml(args.agent, AGENT_KEYS, "agent")
        if args.timesteps:
            agent = apply_overrides(agent, [f"total_timesteps:{args.timesteps}"])
        agent.setdefault("name", Path(args.agent).stem)
        env = load_yaml(args.env, ENV_KEYS, "env")
        env.setdefault("name", Path(args.env).stem)
        print(f"training {agent['name']} at lambdas {env['lam_grid']} (one process per budget)", flush=True)
        runs = train_grid(agent, env, list(env["lam_grid"]), args.seed, out / "runs")
        for run in runs:
            cfg_lam = run.name.split("__")[1]
            ckpts.append(str(export_run(run, out / "checkpoints" / f"{agent['name']}_{cfg_lam}")))
    shipped = ROOT / "checkpoints"  # shipped math500 policies: checkpoints/NAME and checkpoints/trim_pomdp/NAME
    for folder in (shipped, shipped / "trim_pomdp"):
        if folder.exists() and any(folder.glob("*/policy.json")):
            ckpts.append(str(folder))
    cmd = ["--trees", "sim:math500:test", "--out", str(out), "--seed", str(args.seed), "--bootstrap", str(args.bootstrap)]
    if ckpts:
        cmd += ["--checkpoints", *ckpts]
    return evaluate_main(cmd)


if __name__ == "__main__":
    sys.exit(main())
