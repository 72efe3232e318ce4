"""``train.py``: train routing policies from YAML configs (thin CLI over :mod:`trim_rl.train.run`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

DEFAULT_AGENT = "agents/trim_agg.yaml"
DEFAULT_ENV = "envs/math500.yaml"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="train.py",
        description="Train a step-level routing policy (MaskablePPO TRIM-Agg / TRIM-Seq, or TRIM-POMDP) on "
                    "trajectory trees.  Each run writes runs/<agent>/<env>__<lambda>__<seed>__<time>/ with "
                    "config.yml, command.txt, git_hash.txt, TensorBoard events (tb/), model.zip (for --resume) "
                    "and best_model.zip (best validation score accuracy - lambda x strong tokens).  With no "
                    "arguments it trains the default setting on the bundled data.  The TRIM-POMDP agent "
                    "(agents/trim_pomdp.yaml) is fitted and solved instead: its run folders hold policy.json + "
                    "policy.npz, and --lam-grid solves every budget in this process.")
    ap.add_argument("--agent", default=DEFAULT_AGENT, help=f"agent YAML (default {DEFAULT_AGENT})")
    ap.add_argument("--env", default=DEFAULT_ENV, help=f"environment YAML: trees and lambda grid (default {DEFAULT_ENV})")
    ap.add_argument("--lam", type=float, default=None, help="price of one strong token (default: the env YAML's lam)")
    ap.add_argument("--lam-grid", nargs="*", type=float, default=None,
                    help="train one policy per lambda, one process per budget on all cores; with no values: "
                         "the env YAML's lam_grid")
    ap.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY:VALUE",
                    help="override agent YAML entries, e.g. learning_rate:1e-4 total_timesteps:50000 "
                         "policy_kwargs.net_arch:[32,32] (values parsed as YAML)")
    ap.add_argument("--seed", type=int, default=0, help="seed of training (env, network init, PPO); default 0")
    ap.add_argument("--resume", default=None, metavar="RUN_DIR",
                    help="continue the run in RUN_DIR from its model.zip up to its total_timesteps (its config "
                         "is used; --hyperparams total_timesteps:N extends it)")
    ap.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                    help="start the actor from an exported TRIM-Agg / TRIM-Seq checkpoint folder (python -m "
                         "trim_rl.export, or python -m trim_rl.eval.headroom --distill-out); its observation and "
                         "network must match the agent YAML; the critic starts fresh.  Recorded in config.yml")
    ap.add_argument("--runs", default="runs", help="root folder of run folders (default runs)")
    ap.add_argument("--workers", type=int, default=None, help="processes for --lam-grid (default: min(budgets, cores))")
    ap.add_argument("--verbose", type=int, default=0, help="1 prints SB3's training log")
    ap.add_argument("--no-progress", action="store_true",
                    help="no progress bar (by default a single run shows one over env steps on stderr, with the "
                         "latest validation score, accuracy and cost; --lam-grid shows one over budgets)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import yaml

    from trim_rl.train.config import AGENT_KEYS, ENV_KEYS, apply_overrides, load_yaml
    from trim_rl.train.run import train_grid, train_one

    command = shlex.join([sys.executable, *(sys.argv if argv is None else ["train.py", *argv])])
    if args.resume:
        if not (Path(args.resume) / "config.yml").exists():
            print(f"train.py: --resume {args.resume}: no config.yml there", file=sys.stderr)
            return 2
        resumed = yaml.safe_load((Path(args.resume) / "config.yml").read_text()) or {}
        if resumed.get("agent", {}).get("algo") == "pomdp":
            print("train.py: a TRIM-POMDP run has nothing to resume (solving is deterministic; train again)",
                  file=sys.stderr)
            return 2
        run = train_one({}, {}, 0.0, 0, resume=args.resume, verbose=args.verbose, command=command,
                        overrides=args.hyperparams, progress=not args.no_progress)
        print(f"run: {run}")
        return 0
    agent = apply_overrides(load_yaml(args.agent, AGENT_KEYS, "agent"), args.hyperparams)
    env = load_yaml(args.env, ENV_KEYS, "env")
    agent.setdefault("name", Path(args.agent).stem)
    if args.init_from:
        if agent.get("algo", "maskable_ppo") == "pomdp":
            print("train.py: --init-from applies to PPO agents, not TRIM-POMDP", file=sys.stderr)
            return 2
        if not (Path(args.init_from) / "policy.json").exists():
            print(f"train.py: --init-from {args.init_from}: no policy.json there (export a run first)", file=sys.stderr)
            return 2
        agent["init_from"] = str(Path(args.init_from).resolve())
        from trim_rl.train.warm_start import check_checkpoint

        try:  # before any run folder is made
            check_checkpoint(agent["init_from"], agent)
        except (ValueError, FileNotFoundError) as e:
            print(f"train.py: --init-from: {e}", file=sys.stderr)
            return 2
    env.setdefault("name", Path(args.env).stem)
    if agent.get("algo", "maskable_ppo") == "pomdp":  # fitted and solved, no PPO: all budgets in this process
        from trim_rl.train.pomdp import train_pomdp

        if args.lam_grid is not None:
            lams = args.lam_grid or list(agent.get("lam_grid") or env.get("lam_grid", []))
        else:
            lams = [args.lam if args.lam is not None else float(env.get("lam", 1e-3))]
        if not lams:
            print("train.py: --lam-grid without values needs lam_grid in the agent or env YAML", file=sys.stderr)
            return 2
        for d in train_pomdp(agent, env, lams, args.seed, args.runs, command, progress=not args.no_progress):
            print(f"run: {d}")
        return 0
    if args.lam_grid is not None:
        lams = args.lam_grid or list(env.get("lam_grid", []))
        if not lams:
            print("train.py: --lam-grid without values needs lam_grid in the env YAML", file=sys.stderr)
            return 2
        if agent.get("budget_conditioned"):
            lams = lams[:1]  # one budget-conditioned policy serves every budget
        for d in train_grid(agent, env, lams, args.seed, args.runs, args.workers, command,
                            progress=not args.no_progress):
            print(f"run: {d}")
        return 0
    lam = args.lam if args.lam is not None else float(env.get("lam", 1e-3))
    run = train_one(agent, env, lam, args.seed, args.runs, verbose=args.verbose, command=command,
                    progress=not args.no_progress)
    print(f"run: {run}")
    return 0
