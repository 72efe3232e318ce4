"""``evaluate.py``: sweep policies over held-out trees and write metrics, points, report and plot.

A thin layer over the Python API: the flags of an evaluation become one call of
:func:`trim_rl.api.evaluate`, which checks everything; this module writes and prints what it returns.
``--report paper``, ``--robustness`` and ``--logged`` are other reports, each one call of its own
function."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from trim_rl.argtypes import OneLineParser, add_bootstrap, add_quiet, add_seed, fraction, nonneg_float, refuse_repeats, run_command
from trim_rl.agents.query import QUERY_ROUTERS
from trim_rl.configs import ConfigError
from trim_rl.evaluation.evaluation import DEFAULT_POLICIES, DEFAULT_TREES, POOL_SEEDS
from trim_rl.evaluation.metrics import MAX_BOOTSTRAP
from trim_rl.evaluation.paper import check_test_seeds, paper_report
from trim_rl.evaluation.report import check_output_folder
from trim_rl.evaluation.robustness import robustness_report
from trim_rl.evaluation.sweep import LABELS
from trim_rl.sim.bundled import check_tree_spec


def build_parser(prog: str = "evaluate.py") -> argparse.ArgumentParser:
    ap = OneLineParser(prog=prog, description=inspect.getdoc(_main))
    ap.add_argument("--trees", nargs="+", default=None, metavar="SPEC",
                    help="tree files (.jsonl/.jsonl.gz) or sim:PROFILE:SPLIT[:SEEDS] for simulated trees; several "
                         "seeds (sim:math500:test:100-109) or files are a pool: pooled figures with intervals over "
                         f"test problems, and each seed's figures and their spread (default {DEFAULT_TREES}: ten "
                         "test seeds no training or selection saw, generated on first use, about 20-40 s each; "
                         "sim:math500:test is the bundled seed alone)")
    ap.add_argument("--policies", default=DEFAULT_POLICIES,
                    help=f"comma-separated built-in policies (default {DEFAULT_POLICIES}); step-level: "
                         + ", ".join(LABELS) + "; query-level: " + ", ".join(QUERY_ROUTERS))
    ap.add_argument("--train-trees", default=None,
                    help="train split for the learned query routers (default: sim:PROFILE:train when --trees is "
                         "sim:PROFILE:test)")
    ap.add_argument("--val-trees", default=None,
                    help="validation split for tuning the learned query routers (default: sim:PROFILE:val)")
    ap.add_argument("--report", choices=["paper"], default=None,
                    help="'paper': Table-1 rows on the math500 and aime test trees (every baseline and TRIM policy "
                         "present), the Table-2 cross-benchmark table, Pareto plots and PRM diagnostics in --out")
    ap.add_argument("--test-seeds", default=None, metavar="SEEDS",  # None: refused without --report paper
                    help="with --report paper: every table's test trees are the pool of these test seeds of each "
                         "profile (N, A-B or a comma list; sim:PROFILE:test:SEEDS, generated on first use): pooled "
                         f"figures with intervals over test problems and each seed's spread (default {POOL_SEEDS}, "
                         "the README's pool, about 30 min on 2 cores; 0 is the bundled seed alone, about 2 min)")
    ap.add_argument("--checkpoints", nargs="*", default=[], metavar="DIR",
                    help="exported checkpoint folders (or folders holding them); checkpoints of one family "
                         "(policy.json 'family', e.g. TRIM-Agg) form one frontier, one point per checkpoint (its budget or price)")
    ap.add_argument("--out", default=None, help="output folder (default reports/<trees name>)")
    add_bootstrap(ap, "for the 95%% intervals", MAX_BOOTSTRAP)
    add_seed(ap, "seed of the bootstrap, the random router and routing errors")
    ap.add_argument("--routing-errors", type=fraction, default=0.0,
                    help="flip this fraction of each step policy's decisions (ablation; default 0)")
    ap.add_argument("--prm-noise", type=nonneg_float, default=0.0, metavar="SIGMA",
                    help="perturb every PRM score of the trees: Gaussian noise of SD SIGMA on its logit "
                         "(seeded by --seed; default 0)")
    ap.add_argument("--prm-flip", type=fraction, default=0.0, metavar="P",
                    help="replace a fraction P of the PRM scores by 1 - score (after --prm-noise; seeded; default 0)")
    ap.add_argument("--robustness", action="store_true",
                    help="instead of one evaluation: CPT(80%%) of TRIM-Thr, TRIM-POMDP (from --checkpoints, or "
                         "fitted on the training trees and solved) and every --checkpoints family at several PRM "
                         "noise and flip levels (python -m trim_rl.evaluation.robustness has all the options)")
    add_quiet(ap, ", and no table in the terminal (only the paths)")
    ap.add_argument("--logged", default=None, metavar="LOG",
                    help="instead of trees: estimate the --checkpoints policies (folders, or thr:K) from a decision log "
                         "(RUN/rollouts.jsonl of train.py --live, or serve --log-decisions): importance weighting, "
                         "doubly robust, effective sample size (trim_rl/evaluation/offpolicy.py)")
    return ap


def main(argv: list[str] | None = None, prog: str = "evaluate.py") -> int:
    return run_command(build_parser(prog), argv, _main)


def _check_report_args(args) -> None:
    """``--report paper`` and ``--robustness`` (which take no --policies): their other flags checked
    before any work."""
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in names if n not in LABELS and n not in QUERY_ROUTERS]
    if unknown:
        raise ConfigError(f"--policies: unknown {', '.join(unknown)}; available: {', '.join([*LABELS, *QUERY_ROUTERS])}")
    refuse_repeats(names, lambda n: f"--policies: {n} is named twice", ConfigError)
    if args.out:
        check_output_folder(args.out, "--out")
    for flag, spec in (("--trees", args.trees), ("--train-trees", args.train_trees), ("--val-trees", args.val_trees)):
        if spec is not None:
            check_tree_spec(spec, flag)


def _main(args) -> int:
    """Evaluate routing policies on held-out trajectory trees: sweep each policy's setting (thresholds
    0..1 by 0.05, probabilities, budgets) into operating points and write DIR/metrics.json,
    DIR/points.csv, DIR/report.md and DIR/frontier.png."""
    if args.test_seeds is not None and args.report != "paper":  # --trees takes the pool of any other evaluation
        raise ConfigError("--test-seeds: only with --report paper (elsewhere give the pool as --trees "
                          "sim:PROFILE:test:SEEDS)")
    if args.logged:
        from trim_rl.evaluation.offpolicy import cli_logged

        return cli_logged(args.logged, args.checkpoints, args.out, args.seed, args.quiet)
    if args.trees is None:
        args.trees = [DEFAULT_TREES]
    if args.report == "paper":
        _check_report_args(args)
        check_test_seeds(args.test_seeds)
        out = Path(args.out or "reports/paper")
        paper_report(out, checkpoints=args.checkpoints or None, n_boot=args.bootstrap, seed=args.seed,
                     routing_errors=args.routing_errors, progress=not args.quiet,
                     test_seeds=POOL_SEEDS if args.test_seeds is None else args.test_seeds)
        print(f"report: {out / 'report.md'}")
        return 0
    if args.robustness:
        _check_report_args(args)
        trees = args.trees[0] if len(args.trees) == 1 else args.trees
        out = robustness_report(trees, args.checkpoints, seed=args.seed, n_boot=args.bootstrap,
                                out=args.out, progress=not args.quiet)
        print(f"report: {out}")
        return 0
    # trim_rl.api imports torch
    from trim_rl import api

    result = api.evaluate(args.policies, args.trees, checkpoints=args.checkpoints, n_boot=args.bootstrap,
                          seed=args.seed, routing_errors=args.routing_errors, prm_noise=args.prm_noise,
                          prm_flip=args.prm_flip, train_trees=args.train_trees, val_trees=args.val_trees,
                          out=args.out, progress=not args.quiet)
    out = Path(args.out) if args.out else result.default_out
    if not args.out:
        result.write(out)
    print(f"report: {out / 'report.md'}")
    print(f"metrics: {out / 'metrics.json'}")
    if not args.quiet:  # the result itself, after minutes of work, not only where it was written
        print("\n" + result.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
