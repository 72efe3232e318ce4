"""How far is each family from what its observation allows?  (docs/research/ceiling.md)

Fits approximate policy iteration on the ``agg`` features (``trim_rl.evaluation.headroom``: exact tree
values, a gradient-boosted advantage, no sampling noise) on many more training trees than the
recipe uses, one router per price, and evaluates that frontier on the test pool next to TRIM-Thr,
the step oracle and the shipped checkpoints, with the evaluator the README uses (pooled figures,
bootstrap intervals over test problems, per-seed spread):

    python scripts/research/ceiling.py --out reports/ceiling
    python scripts/research/ceiling.py --train sim:math500:train:0-3 --lams 1e-3 2e-3 --out /tmp/c   # a quick look

No fitted model is written (they would be pickles); the report and a JSON of the settings are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import trim_rl
from trim_rl.data.trees import atomic_output
from trim_rl.evaluation.headroom import fit_policies
from trim_rl.sim.bundled import load_trees

LAMS = (0.75e-3, 1.0e-3, 1.5e-3, 1.6e-3, 1.7e-3, 1.85e-3, 2.05e-3, 2.3e-3)  # 8-34% cost on 24 draws, dense at CPT(80%)
SHIPPED = ("checkpoints/trim_agg", "checkpoints/trim_seq", "checkpoints/trim_agg_budget", "checkpoints/trim_pomdp")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", default="sim:math500:train:0-23", help="training trees (default: %(default)s)")
    ap.add_argument("--trees", default="sim:math500:test:100-109", help="test pool (default: %(default)s)")
    ap.add_argument("--lams", type=float, nargs="+", default=list(LAMS), help="one router per price")
    ap.add_argument("--iters", type=int, default=6, help="policy-iteration rounds per price (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the regression and the bootstrap")
    ap.add_argument("--no-shipped", action="store_true", help="leave the shipped checkpoints out of the report")
    ap.add_argument("--out", required=True, help="report folder")
    args = ap.parse_args(argv)
    t0 = time.time()
    train = load_trees(args.train, progress=True)
    fitted = fit_policies(train, args.lams, iters=args.iters, seed=args.seed,
                          family=f"agg policy iteration, {train.n_trees} training trees")
    fit_s = time.time() - t0
    policies = ["thr", "always-weak", "always-strong", "oracle-step", *fitted]
    res = trim_rl.evaluate(policies, args.trees, checkpoints=() if args.no_shipped else SHIPPED, seed=args.seed,
                           out=args.out, progress=True)
    settings = {"train": args.train, "train_trees": train.n_trees, "trees": args.trees, "lams": args.lams,
                "iters": args.iters, "seed": args.seed, "fit_seconds": round(fit_s, 1),
                "seconds": round(time.time() - t0, 1)}
    with atomic_output(Path(args.out, "ceiling_settings.json"), "w") as fh:
        fh.write(json.dumps(settings, indent=1) + "\n")
    print(res.table())
    for fam in res.data["policies"]:
        try:
            r = res.ratio(fam, "80")
        except (KeyError, ValueError):
            continue
        s = r["spread"]
        print(f"{fam}: CPT(80%) / TRIM-Thr's {r['pooled']:.3f} [{r['interval'][0]:.3f}, {r['interval'][1]:.3f}], "
              f"per seed {s['mean']:.3f} ± {s['sd']:.3f} [{s['min']:.3f}, {s['max']:.3f}]")
    print(f"report in {args.out} ({settings['seconds']:.0f} s, fitting {fit_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
