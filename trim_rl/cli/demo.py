"""The main job (``make demo``): train TRIM-Agg for a grid of budgets on the bundled MATH-500 setting,
export each policy, and evaluate them next to TRIM-Thr, the baselines, the oracles and the shipped
checkpoints on a pool of held-out test seeds; the report's main table is printed at the end.

Made of the Python API alone: :func:`trim_rl.train` with a budget grid, :meth:`Run.export
<trim_rl.api.Run.export>`, :func:`trim_rl.evaluate` and writing its report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trim_rl.argtypes import (OneLineParser, add_agent_env, add_bootstrap, add_hyperparams, add_seed, positive_float,
                              refuse_repeats, run_command)
from trim_rl.evaluation.evaluation import DEFAULT_POLICIES
from trim_rl.evaluation.metrics import MAX_BOOTSTRAP
from trim_rl.evaluation.report import check_output_folder
from trim_rl.sim.bundled import check_tree_spec, resolve_tree_spec

DEMO_BUDGETS = (5.0, 12.0, 20.0, 26.0)
#: the demo's pool: the bundled test seed and DEMO_POOL_SIZE - 1 more, generated on first use
#: (about 20 s each on 2 cores); the README's figures come from the larger pool of evaluate.py
DEMO_TREES = "sim:math500:test:0-2"


def build_parser(prog: str = "python -m trim_rl.demo") -> argparse.ArgumentParser:
    ap = OneLineParser(prog=prog, description=__doc__)
    ap.add_argument("--out", default="reports/demo", help="output folder (default reports/demo)")
    add_agent_env(ap)
    ap.add_argument("--budgets", nargs="+", type=positive_float, default=list(DEMO_BUDGETS),
                    help=f"budgets to train, %% of always-strong's strong tokens (default {' '.join(map(str, DEMO_BUDGETS))})")
    add_hyperparams(ap, "override agent YAML entries (as train.py --hyperparams), e.g. for a quick run")
    add_seed(ap, "training and evaluation seed")
    add_bootstrap(ap, "of the evaluation", MAX_BOOTSTRAP)
    ap.add_argument("--trees", nargs="+", default=[DEMO_TREES], metavar="SPEC",
                    help=f"test trees: several seeds or files are pooled, with the per-seed spread (default {DEMO_TREES}: "
                         "the bundled test seed and two more, generated on first use)")
    ap.add_argument("--no-train", action="store_true", help="only evaluate (built-in policies and shipped checkpoints)")
    return ap


def main(argv: list[str] | None = None, prog: str = "python -m trim_rl.demo") -> int:
    return run_command(build_parser(prog), argv, _main)


def _main(args) -> int:
    # before the first training: a run of several minutes must not end on a flag it could have refused
    if not args.no_train:
        refuse_repeats(args.budgets, lambda b: f"--budgets: {b:g} is named twice")
    check_output_folder(args.out, "--out")
    check_tree_spec(args.trees, "--trees")

    # trim_rl.api imports torch
    from trim_rl import api

    out = Path(args.out)
    pregenerate(args)
    checkpoints: list[str] = []
    if not args.no_train:
        print(f"training {args.agent} for budgets {', '.join(f'{b:g}%' for b in args.budgets)} "
              f"(one process per budget; the first run also generates and caches the training trees)", flush=True)
        try:
            runs = api.train(args.agent, args.env, budget_grid=list(args.budgets), seed=args.seed, runs=out / "runs",
                             hyperparams=args.hyperparams, progress=True)
        except ValueError as exc:  # the training names the grid as train.py spells it
            if not str(exc).startswith("--budget-grid"):
                raise
            raise type(exc)("--budgets" + str(exc)[len("--budget-grid"):]) from None
        for run in runs:
            checkpoints.append(str(run.export(out / "checkpoints" / run.path.name.split("__")[1])))
    shipped = api.project_folder("checkpoints")
    for folder in (shipped / "trim_agg", shipped / "trim_pomdp"):
        if folder.exists() and any(folder.glob("*/policy.json")):
            checkpoints.append(str(folder))
    # what evaluate.py --trees ... --out OUT --checkpoints ... prints, with its default policies
    result = api.evaluate(DEFAULT_POLICIES, list(args.trees), checkpoints=checkpoints, n_boot=args.bootstrap,
                          seed=args.seed, out=out, progress=True)
    print(f"report: {out / 'report.md'}")
    print(f"metrics: {out / 'metrics.json'}")
    print("\n" + result.table())
    return 0


def pregenerate(args) -> None:
    """Every simulated tree the demo will read (training, validation, calibration and the test pool),
    generated up front under one progress bar ("draw i of N"), not one bar per split."""
    from trim_rl.resources import config_file
    from trim_rl.training.config import load_env

    specs = [s for s in args.trees if s.startswith("sim:")]
    if not args.no_train:
        env = load_env(config_file("envs", args.env))
        for spec in (env.train, env.val, env.calib_spec):
            specs += [str(s) for s in (spec if isinstance(spec, (list, tuple)) else [spec]) if str(s).startswith("sim:")]
    resolve_tree_spec(list(dict.fromkeys(specs)), progress=True)


if __name__ == "__main__":
    sys.exit(main())
