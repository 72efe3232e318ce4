"""``evaluate.py``: sweep policies over held-out trees and write metrics, points, report and plot."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from trim_rl.data.flat import FlatTrees, load_flat
from trim_rl.eval.metrics import policy_metrics
from trim_rl.eval.report import DIBC_NOTE, write_all
from trim_rl.eval.rollout import weak_only_records
from trim_rl.agents.query import QUERY_ROUTERS
from trim_rl.eval.query_sweep import LABELS as QUERY_LABELS
from trim_rl.eval.sweep import LABELS, Point, checkpoint_families, find_checkpoints, sweep, sweep_checkpoints

DEFAULT_POLICIES = "thr,always-weak,always-strong,random,oracle-step,oracle-query"


def evaluate_policies(trees: FlatTrees, names: list[str], n_boot: int = 1000, seed: int = 0,
                      routing_errors: float = 0.0, progress: bool = True, trees_label: str = "",
                      checkpoints: list | None = None, query_ctx=None) -> dict:
    """Operating points and metrics of every policy in ``names`` (built-in) and of every family of
    exported ``checkpoints`` on ``trees``."""
    families = checkpoint_families(checkpoints or [])
    weak = weak_only_records(trees)
    result = {"trees": trees_label, "n_problems": trees.n_trees, "n_boot": n_boot, "seed": seed,
              "routing_errors": routing_errors, "dibc_averaging": DIBC_NOTE, "policies": {}}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(names) + len(families), desc="evaluate", unit="policy", file=sys.stderr)
    for name in [*names, *families]:
        if bar is not None:
            bar.set_postfix_str(name)
        t0 = time.perf_counter()
        diagnostics = None
        if name in families:
            points: list[Point] = sweep_checkpoints(families[name], trees, seed=seed, routing_errors=routing_errors)
        elif name in QUERY_ROUTERS:
            from trim_rl.eval.query_sweep import sweep_query

            points, diagnostics = sweep_query(name, trees, query_ctx)
            if not points:  # not applicable to these trees
                result.setdefault("not_applicable", {})[name] = diagnostics
                if bar is not None:
                    bar.update(1)
                continue
        else:
            points = sweep(name, trees, seed=seed, routing_errors=routing_errors)
        correct = np.stack([p.records.correct for p in points])
        strong = np.stack([p.records.strong_tokens for p in points])
        m = policy_metrics(correct, strong, weak.correct, trees.strong_only_correct, trees.strong_only_tokens,
                           [p.setting for p in points], n_boot=n_boot, seed=seed)
        for pt, p in zip(m["points"], points):
            pt["weak_tokens"] = float(p.records.weak_tokens.mean())
            pt["interventions"] = float(p.records.interventions.mean())
        m["label"] = LABELS.get(name, QUERY_LABELS.get(name, name))
        if diagnostics:
            m["diagnostics"] = diagnostics
        m["seconds"] = round(time.perf_counter() - t0, 2)
        result["references"] = m["references"]
        result["policies"][name] = m
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return result


def make_query_context(test_spec: str, train_spec: str | None, val_spec: str | None, seed: int = 0,
                       progress: bool = False):
    """Train/val trees for the learned query routers (derived from a sim:PROFILE:test spec)."""
    from trim_rl.eval.query_sweep import QueryContext
    from trim_rl.sim.bundled import resolve_tree_spec

    def derive(split):
        parts = test_spec.split(":")
        if not (test_spec.startswith("sim:") and len(parts) >= 3):
            raise ValueError("learned query routers need --train-trees and --val-trees for a tree file")
        return ":".join([parts[0], parts[1], split, *parts[3:]])

    train = load_flat(*resolve_tree_spec(train_spec or derive("train"), progress))
    val = load_flat(*resolve_tree_spec(val_spec or derive("val"), progress))
    return QueryContext(train, val, seed)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Evaluate routing policies on held-out trajectory trees: sweep each policy's setting "
                    "(thresholds 0..1 by 0.05, probabilities, budgets) into operating points and write "
                    "DIR/metrics.json, DIR/points.csv, DIR/report.md and DIR/frontier.png.")
    ap.add_argument("--trees", default="sim:math500:test",
                    help="tree file (.jsonl/.jsonl.gz) or sim:PROFILE:SPLIT[:SEED] for simulated trees "
                         "(default sim:math500:test, the bundled test trees)")
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
    ap.add_argument("--checkpoints", nargs="*", default=[], metavar="DIR",
                    help="exported checkpoint folders (or folders holding them); checkpoints of one family "
                         "(policy.json 'family', e.g. TRIM-Agg) form one frontier, one point per lambda")
    ap.add_argument("--out", default=None, help="output folder (default reports/<trees name>)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bootstrap, the random router and routing errors")
    ap.add_argument("--routing-errors", type=float, default=0.0,
                    help="flip this fraction of each step policy's decisions (ablation; default 0)")
    ap.add_argument("--prm-noise", type=float, default=0.0, metavar="SIGMA",
                    help="perturb every PRM score of the trees: Gaussian noise of SD SIGMA on its logit "
                         "(seeded by --seed; default 0)")
    ap.add_argument("--prm-flip", type=float, default=0.0, metavar="P",
                    help="replace a fraction P of the PRM scores by 1 - score (after --prm-noise; seeded; default 0)")
    ap.add_argument("--robustness", action="store_true",
                    help="instead of one evaluation: CPT(80%%) of TRIM-Thr, TRIM-POMDP (from --checkpoints, or "
                         "fitted on the training trees and solved) and every --checkpoints family at several PRM "
                         "noise and flip levels (python -m trim_rl.eval.robustness has all the options)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    from trim_rl.data.errors import TreeFormatError

    try:
        return _main(argv)
    except (FileNotFoundError, TreeFormatError, ValueError) as exc:
        print(f"evaluate.py: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trim_rl.sim.bundled import resolve_tree_spec

    if args.report == "paper":
        from trim_rl.eval.paper import paper_report

        out = Path(args.out or "reports/paper")
        paper_report(out, checkpoints=args.checkpoints or None, n_boot=args.bootstrap, seed=args.seed,
                     routing_errors=args.routing_errors, progress=not args.quiet)
        print(f"report: {out / 'report.md'}")
        return 0
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in names if n not in LABELS and n not in QUERY_ROUTERS]
    if unknown:
        print(f"evaluate.py: unknown policies {unknown}; available: {', '.join([*LABELS, *QUERY_ROUTERS])}",
              file=sys.stderr)
        return 2
    if not 0.0 <= args.routing_errors <= 1.0:
        print("evaluate.py: --routing-errors must be in [0, 1]", file=sys.stderr)
        return 2
    if args.prm_noise < 0 or not 0.0 <= args.prm_flip <= 1.0:
        print("evaluate.py: --prm-noise must be >= 0 and --prm-flip in [0, 1]", file=sys.stderr)
        return 2
    if args.robustness:
        from trim_rl.eval.robustness import main as robustness_main

        return robustness_main(["--trees", args.trees, "--seed", str(args.seed), "--bootstrap", str(args.bootstrap),
                                *(["--out", args.out] if args.out else []), *(["--quiet"] if args.quiet else []),
                                *(["--checkpoints", *args.checkpoints] if args.checkpoints else [])])
    from trim_rl.eval.perturb import describe, perturb_prm

    checkpoints = find_checkpoints(args.checkpoints) if args.checkpoints else []
    paths = resolve_tree_spec(args.trees, progress=not args.quiet)
    trees = perturb_prm(load_flat(*paths), args.prm_noise, args.prm_flip, args.seed)
    perturbed = describe(args.prm_noise, args.prm_flip)
    query_ctx = None
    if any(n in ("sw", "mf", "clf") for n in names):
        query_ctx = make_query_context(args.trees, args.train_trees, args.val_trees, args.seed, not args.quiet)
    out = Path(args.out) if args.out else Path("reports") / Path(paths[0]).name.split(".")[0]
    result = evaluate_policies(trees, names, n_boot=args.bootstrap, seed=args.seed,
                               routing_errors=args.routing_errors, progress=not args.quiet,
                               trees_label=args.trees + (f" ({perturbed})" if perturbed else ""),
                               checkpoints=checkpoints, query_ctx=query_ctx)
    result.update(prm_noise=args.prm_noise, prm_flip=args.prm_flip)
    write_all(out, result)
    print(f"report: {out / 'report.md'}")
    print(f"metrics: {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
