"""``python -m trim_rl.sim {calibrate,generate,report}``."""

from __future__ import annotations

import argparse
import json
import sys

from trim_rl.argtypes import int_at_least
from trim_rl.sim import calibrate as C
from trim_rl.sim.bundled import BUNDLED_PROFILES, BUNDLED_SEED, bundled_path
from trim_rl.sim.generate import generate_file
from trim_rl.sim.params import load_params, save_params
from trim_rl.sim.report import sweep_report


def _parser(prog: str = "python -m trim_rl.sim") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="The calibrated trajectory simulator.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("calibrate", help="fit the step model to the shipped measurements and write the parameter JSON",
                       description="Fit the math500 step model (Nelder-Mead on the objective documented in "
                                   "trim_rl.sim.calibrate) to the real TRIM-Thr sweep, the end points and the step "
                                   "statistics; print real vs simulated figures and PRM-score TV distances.")
    c.add_argument("--params", default=None, help="starting parameter JSON (default: the package's fitted file)")
    c.add_argument("--out", default=None, help="where to write the fitted JSON (default: the package's file)")
    c.add_argument("--evals", type=int, default=2500, help="objective evaluations per Nelder-Mead round (default 2500)")
    c.add_argument("--rounds", type=int, default=3, help="Nelder-Mead restarts, each from the last best (default 3)")
    c.add_argument("--draws", type=int, default=4, help="simulated solutions per problem per evaluation (default 4)")
    c.add_argument("--check", action="store_true", help="only print the current fit; change nothing")

    g = sub.add_parser("generate", help="write a tree file from a profile",
                       description="Draw trajectory trees of one split of a profile. Same arguments, same bytes.")
    g.add_argument("--profile", default="math500", help="math500 | aime | olympiadbench | minerva (default math500)")
    g.add_argument("--split", default="test", choices=["train", "val", "test"], help="problem split (default test)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--out", help="output file (.jsonl or .jsonl.gz)")
    g.add_argument("--limit", type=int_at_least(0), default=None, help="only the first N problems of the split (N >= 0)")
    g.add_argument("--draws", type=int, default=None, help="trees per problem (default: the profile's)")
    g.add_argument("--params", default=None, help="parameter JSON (default: the package's fitted file)")
    g.add_argument("--bundled", action="store_true", help="regenerate the tree files shipped in the package (seed 0)")

    r = sub.add_parser("report", help="real TRIM-Thr sweep next to the simulator's, on generated test trees",
                       description="Evaluate TRIM-Thr at the thresholds of the measured sweep on the profile's test "
                                   "trees and print both tables; optionally write them (and a plot) into the README.")
    r.add_argument("--profile", default="math500", help="profile (only math500 has a real sweep; default math500)")
    r.add_argument("--seed", type=int, default=0, help="seed of the test trees (default 0: the bundled ones)")
    r.add_argument("--trees", default=None, help="evaluate this tree file instead of generated trees")
    r.add_argument("--readme", default=None, help="page (Markdown) to update between the sim-report markers, e.g. docs/simulator.md")
    r.add_argument("--plot", default=None, help="write the curve plot (PNG) here")
    return ap


def main(argv: list[str] | None = None, prog: str = "python -m trim_rl.sim") -> int:
    args = _parser(prog).parse_args(argv)
    if args.cmd == "calibrate":
        params = load_params(args.params)
        if not args.check:
            for r in range(args.rounds):
                m, meta = C.fit(params, max_evals=args.evals, draws=args.draws, seed=r, progress=None)
                params.model, params.fit = m, {**meta, "rounds": r + 1}
                print(f"round {r + 1}/{args.rounds}: objective {meta['loss']:.2f} ({meta['seconds']} s)", flush=True)
            path = save_params(params, args.out)
            print(f"wrote {path}")
        print(C.describe(params))
        return 0
    if args.cmd == "generate":
        params = load_params(args.params)
        if args.bundled:
            for prof in BUNDLED_PROFILES:
                for split in ("train", "val", "test"):
                    s = generate_file(prof, split, BUNDLED_SEED, bundled_path(prof, split), params=params, progress=True)
                    print(json.dumps(s))
            return 0
        if not args.out:
            print("generate: --out is required (or --bundled)", file=sys.stderr)
            return 2
        s = generate_file(args.profile, args.split, args.seed, args.out, params=params, limit=args.limit,
                          draws=args.draws, progress=True)
        print(json.dumps(s))
        return 0
    if args.cmd == "report":
        print(sweep_report(args.profile, args.seed, args.trees, args.readme, args.plot))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
