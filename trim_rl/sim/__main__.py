"""``python -m trim_rl.sim {calibrate,generate,report}``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from trim_rl.argtypes import OneLineParser, add_command, add_limit, add_seed, int_at_least, int_between, output_file, run_command
from trim_rl.sim import calibrate as C
from trim_rl.sim.bundled import BUNDLED_PROFILES, BUNDLED_SEED, bundled_path
from trim_rl.sim.generate import generate_file, plan
from trim_rl.resources import resource_path
from trim_rl.sim.params import PARAMS_FILE, load_params, save_params
from trim_rl.evaluation.sim_report import check_report, sweep_report
from trim_rl.sim import server as sim_server

MAX_CALIBRATE_DRAWS = 200  # 500 problems x draws episodes, ~5 KB each per evaluation: 200 draws is ~0.5 GB


def _parser(prog: str = "python -m trim_rl.sim") -> OneLineParser:
    ap = OneLineParser(prog=prog, description="The calibrated trajectory simulator.")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=OneLineParser)

    c = add_command(sub, "calibrate", calibrate,
                    "fit the step model to the shipped measurements and write the parameter JSON")
    c.add_argument("--params", default=None, help="starting parameter JSON (default: the package's fitted file)")
    c.add_argument("--out", type=output_file, default=None,
                   help="where to write the fitted JSON (default: the package's file)")
    c.add_argument("--evals", type=int_at_least(1), default=2500,
                   help="objective evaluations per Nelder-Mead round (default 2500)")
    c.add_argument("--rounds", type=int_at_least(1), default=3,
                   help="Nelder-Mead restarts, each from the last best (default 3)")
    c.add_argument("--draws", type=int_between(1, MAX_CALIBRATE_DRAWS), default=4,
                   help=f"simulated solutions per problem per evaluation (default 4, at most {MAX_CALIBRATE_DRAWS})")
    c.add_argument("--check", action="store_true", help="only print the current fit; change nothing")

    g = add_command(sub, "generate", generate, "write a tree file from a profile")
    g.add_argument("--profile", default="math500", help="math500 | aime | olympiadbench | minerva (default math500)")
    g.add_argument("--split", default="test", choices=["train", "val", "test"], help="problem split (default test)")
    add_seed(g, "random seed")
    g.add_argument("--out", type=output_file, help="output file (.jsonl or .jsonl.gz)")
    add_limit(g, int_at_least(1), where=" of the split (N >= 1)")
    g.add_argument("--draws", type=int_at_least(1), default=None,
                   help="trees per problem (default: the profile's; one file may take at most about 12 GB "
                        "of memory to generate, ~11000 trees)")
    g.add_argument("--params", default=None, help="parameter JSON (default: the package's fitted file)")
    g.add_argument("--bundled", action="store_true", help="regenerate the tree files shipped in the package (seed 0)")

    r = add_command(sub, "report", report, "real TRIM-Thr sweep next to the simulator's, on generated test trees")
    r.add_argument("--profile", default="math500", help="profile (only math500 has a real sweep; default math500)")
    add_seed(r, "seed of the test trees", ": the bundled ones")
    r.add_argument("--trees", default=None, help="evaluate this tree file instead of generated trees")
    r.add_argument("--readme", default=None, help="page (Markdown) to update between the sim-report markers, e.g. docs/simulator.md")
    r.add_argument("--plot", type=output_file, default=None, help="write the curve plot (PNG) here")
    sim_server.add_parser(sub)
    return ap


def _check_writable(out: str | None) -> None:
    """A fit takes hours: where it goes must be writable before it starts (the default is the
    package's own file, read-only in many installations)."""
    target = Path(out) if out else resource_path(PARAMS_FILE)
    folder = next((p for p in [target.parent, *target.parent.parents] if p.exists()), Path("."))
    if not os.access(target if target.exists() else folder, os.W_OK):
        where = f"--out {out}" if out else f"the package's parameter file {target}"
        raise PermissionError(f"{where}: not writable" + ("" if out else "; give --out FILE"))


def main(argv: list[str] | None = None, prog: str = "python -m trim_rl.sim") -> int:
    return run_command(_parser(prog), argv, _main)


def _main(args) -> int:
    return {"calibrate": calibrate, "generate": generate, "report": report, "serve": sim_server.main}[args.cmd](args)


def calibrate(args) -> int:
    """Fit the math500 step model (Nelder-Mead on the objective documented in trim_rl.sim.calibrate) to
    the real TRIM-Thr sweep, the end points and the step statistics; print real vs simulated figures and
    PRM-score TV distances."""
    params = load_params(args.params)
    if "math500" not in params.profiles:
        raise ValueError(f"--params {args.params}: calibration fits the math500 profile, which the file lacks")
    if not args.check:
        _check_writable(args.out)
        for r in range(args.rounds):
            m, meta = C.fit(params, max_evals=args.evals, draws=args.draws, seed=r, progress=None)
            params.model, params.fit = m, {**meta, "rounds": r + 1}
            print(f"round {r + 1}/{args.rounds}: objective {meta['loss']:.2f} ({meta['seconds']} s)", flush=True)
        path = save_params(params, args.out)
        print(f"wrote {path}")
    print(C.describe(params))
    return 0


def generate(args) -> int:
    """Draw trajectory trees of one split of a profile. Same arguments, same bytes."""
    params = load_params(args.params)
    names = {"profile": "--profile", "split": "--split", "seed": "--seed", "limit": "--limit", "draws": "--draws"}
    if args.bundled:
        jobs = [(prof, split, BUNDLED_SEED, bundled_path(prof, split)) for prof in BUNDLED_PROFILES
                for split in ("train", "val", "test")]
        for prof, split, seed, _ in jobs:  # every file checked before the first is written
            plan(prof, split, seed, params, names=names)
        for prof, split, seed, out in jobs:
            print(json.dumps(generate_file(prof, split, seed, out, params=params, progress=True, names=names)))
        return 0
    if not args.out:
        raise ValueError("generate: --out is required (or --bundled)")
    plan(args.profile, args.split, args.seed, params, args.limit, args.draws, names)
    s = generate_file(args.profile, args.split, args.seed, args.out, params=params, limit=args.limit,
                      draws=args.draws, progress=True, names=names)
    print(json.dumps(s))
    return 0


def report(args) -> int:
    """Evaluate TRIM-Thr at the thresholds of the measured sweep on the profile's test trees and print
    both tables; optionally write them (and a plot) into the README."""
    check_report(args.profile, args.trees, args.readme)
    print(sweep_report(args.profile, args.seed, args.trees, args.readme, args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
