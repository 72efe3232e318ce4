"""Robustness to PRM errors: how CPT(80%) of TRIM-Thr, TRIM-POMDP and any checkpoint family degrades
when the test trees' PRM scores are perturbed (:mod:`trim_rl.evaluation.perturb`).

``python -m trim_rl.evaluation.robustness --out DIR`` (or ``evaluate.py --robustness --out DIR``) writes
``DIR/robustness.json`` and ``DIR/robustness.md``.  TRIM-POMDP comes from ``--checkpoints`` when a
TRIM-POMDP family is among them, else it is fitted on the clean training trees and solved for
``--lams``; the policies never see the perturbation, only its effect on the scores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from trim_rl.argtypes import OneLineParser, fraction, int_between, nonneg_float, positive_float, seed_int
from trim_rl.cli_errors import run_cli
from trim_rl.configs import ConfigError
from trim_rl.evaluation.evaluation import DEFAULT_TREES, evaluate_policies, load_pool
from trim_rl.evaluation.metrics import MAX_BOOTSTRAP, json_safe
from trim_rl.evaluation.perturb import describe, perturb_prm
from trim_rl.evaluation.report import check_output_folder, format_spread
from trim_rl.evaluation.sweep import find_checkpoints
from trim_rl.fsutil import folder_beside
from trim_rl.sim.bundled import check_tree_spec, load_trees

DEFAULT_NOISE = (0.0, 0.5, 1.0, 2.0)
DEFAULT_FLIP = (0.05, 0.1, 0.2)
DEFAULT_LAMS = (3e-4, 5e-4, 8e-4, 1.2e-3, 1.6e-3, 2e-3, 2.4e-3, 2.6e-3, 2.8e-3, 3e-3, 3.2e-3, 3.4e-3, 3.6e-3, 4e-3)
LEVELS = ("50", "80", "95")


def solved_pomdp(train_spec: str, lams: list[float], progress: bool = False) -> list:
    """TRIM-POMDP policies fitted on ``train_spec`` (default settings) and solved for each lambda."""
    # trim_rl.agents.pomdp imports scipy
    from trim_rl.agents.pomdp.fit import fit_model
    from trim_rl.agents.pomdp.policy import POMDPPolicy
    from trim_rl.agents.pomdp.solver import solve

    model = fit_model(load_trees(train_spec, progress), source=train_spec)
    out = []
    for lam in lams:
        pol = POMDPPolicy(model, solve(model, float(lam)), folder=Path("solved") / f"trim_pomdp_{lam:g}")
        out.append(pol)
    return out


def robustness(trees, checkpoints: list, conditions: list[tuple[float, float]], seed: int = 0, n_boot: int = 200,
               progress: bool = False, groups: list[tuple[str, int]] | None = None) -> dict:
    """CPT(50/80/95) and dIBC of TRIM-Thr and every checkpoint family under each (noise, flip).

    ``groups`` (one per test seed, from :func:`~trim_rl.evaluation.evaluation.load_pool`) make the
    trees a pool: intervals over test problems (a problem's draws on every seed resampled together),
    and each policy's per-seed CPT(80%) spread and its CPT(80%) / TRIM-Thr's."""
    rows = []
    for noise, flip in conditions:
        # perturbing keeps the trees' order, so the groups still name the same trees
        pt = perturb_prm(trees, noise, flip, seed)
        res = evaluate_policies(pt, ["thr"], n_boot=n_boot, seed=seed, progress=progress, checkpoints=checkpoints,
                                trees_label=describe(noise, flip) or "clean", groups=groups)
        ratios = res.get("ratios", {}).get("cpt", {})
        pols = {}
        for name, m in res["policies"].items():
            ci = m.get("intervals", {}).get("cpt", {}).get("80")
            row = {"cpt": {k: m["cpt"].get(k) for k in LEVELS}, "cpt80_interval": ci, "dibc": m.get("dibc"),
                   "apgr": m.get("apgr"), "points": len(m["points"])}
            if "spread" in m:
                row["cpt80_per_seed"] = m["per_seed"]["cpt80"]
                row["cpt80_spread"] = m["spread"]["cpt80"]
            if name in ratios:
                row["cpt80_ratio_to_thr"] = ratios[name]["80"]
            pols[m["label"] if name == "thr" else name] = row
        rows.append({"prm_noise": noise, "prm_flip": flip, "policies": pols})
    out = {"seed": seed, "n_boot": n_boot, "noise": "Gaussian on the logit of each PRM score, SD prm_noise",
           "flip": "a fraction prm_flip of the scores replaced by 1 - score", "conditions": rows}
    if groups is not None and len(groups) > 1:
        out["pool"] = {"seeds": [g for g, _ in groups], "trees_per_seed": [int(n) for _, n in groups]}
    return out


def markdown(result: dict, trees_label) -> str:
    names = list(dict.fromkeys(n for r in result["conditions"] for n in r["policies"]))
    label = " ".join(map(str, trees_label)) if isinstance(trees_label, (list, tuple)) else str(trees_label)
    pool = result.get("pool")

    def fmt(v, unit="%"):
        return "inf" if v is None or not np.isfinite(v) else f"{v:.1f}{unit}"

    def cell(p):
        if p is None:
            return ""
        ci = p.get("cpt80_interval")
        text = fmt(p["cpt"]["80"]) + (f" [{fmt(ci[0], '')}, {fmt(ci[1], '')}]" if ci else "")
        if p.get("cpt80_spread"):
            text += f"; per seed {format_spread(p['cpt80_spread'])}"
        return text

    lines = [f"# Robustness to PRM errors on `{label}`", "",
             "CPT(80%): least cost (% of always-strong tokens) at which the frontier recovers 80% of the "
             "weak-to-strong gap (`inf` = never; `null` in JSON); bootstrap 95% intervals over problems "
             f"({result['n_boot']} resamples).  Noise: Gaussian on the logit of every PRM score; flips: a fraction of the scores "
             "replaced by 1 - score (seeded).  Policies are fitted / tuned on clean trees.", ""]
    if pool:
        lines += [f"A pool of {len(pool['seeds'])} test seeds ({sum(pool['trees_per_seed'])} trajectories): pooled "
                  "figures, intervals resampling every draw of a problem on every seed together, and each seed's "
                  "CPT(80%) alone as mean ± sd [min, max] (`inf on k` = never reached on k seeds).", ""]
    lines += ["| PRM noise sigma | PRM flips | " + " | ".join(f"{n} CPT(80%)" for n in names) + " |",
              "|---|---|" + "---|" * len(names)]
    for r in result["conditions"]:
        cells = [cell(r["policies"].get(n)) for n in names]
        lines.append(f"| {r['prm_noise']:g} | {r['prm_flip']:g} | " + " | ".join(cells) + " |")
    ratio_names = [n for n in names if any("cpt80_ratio_to_thr" in r["policies"].get(n, {}) for r in result["conditions"])]
    if ratio_names:
        lines += ["", "CPT(80%) / TRIM-Thr's under the same perturbation: pooled [95% interval, paired "
                  "resamples]; per seed mean ± sd [min, max] (`n/a` where TRIM-Thr never reaches 80%).", "",
                  "| PRM noise sigma | PRM flips | " + " | ".join(ratio_names) + " |",
                  "|---|---|" + "---|" * len(ratio_names)]
        for r in result["conditions"]:
            cells = []
            for n in ratio_names:
                q = r["policies"].get(n, {}).get("cpt80_ratio_to_thr")
                if q is None or not np.isfinite(q["pooled"]):
                    cells.append("n/a")
                    continue
                iv = q["interval"]
                ivs = f" [{iv[0]:.2f}, {iv[1]:.2f}]" if all(np.isfinite(iv)) else ""
                cells.append(f"{q['pooled']:.2f}x{ivs}; per seed {format_spread(q['spread'], 2)}")
            lines.append(f"| {r['prm_noise']:g} | {r['prm_flip']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def robustness_report(trees_spec: str, checkpoint_dirs: list[str], train_spec: str | None = None,
                      lams=DEFAULT_LAMS, noise=DEFAULT_NOISE, flip=DEFAULT_FLIP, seed: int = 0, n_boot: int = 200,
                      out: str | Path | None = None, progress: bool = True) -> Path:
    """Measure and write ``robustness.json`` + ``robustness.md`` into ``out`` (both or neither);
    returns the Markdown file."""
    out = Path(out or "reports/robustness")
    check_output_folder(str(out), "--out")
    conditions = [(float(s), 0.0) for s in noise] + [(0.0, float(p)) for p in flip if p > 0]
    if not conditions:
        raise ConfigError("--noise / --flip: no condition to measure (give a noise level or a flip fraction > 0)")
    bad = [v for v in [*noise, *flip] if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)] \
        + [v for v in flip if v > 1]
    if bad:
        raise ConfigError(f"--noise / --flip: {bad[0]} is not a finite noise level >= 0 or a flip fraction in [0, 1]")
    check_tree_spec(trees_spec, "--trees")
    checkpoints = find_checkpoints(checkpoint_dirs) if checkpoint_dirs else []
    if not any(getattr(c, "family", "") == "TRIM-POMDP" for c in checkpoints):
        train = train_spec
        if train is None:
            parts = trees_spec.split(":")
            if not (trees_spec.startswith("sim:") and len(parts) >= 3):
                raise ConfigError("--train: give the training trees for TRIM-POMDP, or a TRIM-POMDP checkpoint")
            train = ":".join([parts[0], parts[1], "train", *parts[3:]])
        if not list(lams):
            raise ConfigError("--lams: no price given for the TRIM-POMDP solved here (or give a TRIM-POMDP checkpoint)")
        check_tree_spec(train, "--train")
        checkpoints += solved_pomdp(train, list(lams), progress)
    trees, groups = load_pool(trees_spec, progress)
    result = robustness(trees, checkpoints, conditions, seed, n_boot, progress=progress, groups=groups)
    result["trees"] = trees_spec
    with folder_beside(out) as tmp:
        (tmp / "robustness.json").write_text(json.dumps(json_safe(result), indent=1) + "\n", encoding="utf-8")
        (tmp / "robustness.md").write_text(markdown(result, trees_spec), encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        for name in ("robustness.json", "robustness.md"):
            os.replace(tmp / name, out / name)
    return out / "robustness.md"


def main(argv: list[str] | None = None, prog: str = "python -m trim_rl.evaluation.robustness") -> int:
    ap = OneLineParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", nargs="+", default=[DEFAULT_TREES], metavar="SPEC",
                    help=f"test trees: tree files or sim:PROFILE:SPLIT[:SEEDS]; several seeds or files are a pool "
                         f"(default {DEFAULT_TREES}, the README's pool: about an hour on 2 cores with four checkpoint "
                         "families; sim:math500:test, the bundled seed alone, takes minutes)")
    ap.add_argument("--train", default=None,
                    help="training trees for the TRIM-POMDP fitted here (default: sim:PROFILE:train for sim specs)")
    ap.add_argument("--checkpoints", nargs="*", default=[], metavar="DIR",
                    help="checkpoint folders (TRIM-POMDP, TRIM-Agg, ...); each family gets a column")
    ap.add_argument("--lams", nargs="*", type=positive_float, default=list(DEFAULT_LAMS),
                    help="lambdas of the TRIM-POMDP solved here when no TRIM-POMDP checkpoint is given")
    ap.add_argument("--noise", nargs="*", type=nonneg_float, default=list(DEFAULT_NOISE),
                    help=f"PRM logit-noise SDs, each with no flips (default {' '.join(map(str, DEFAULT_NOISE))})")
    ap.add_argument("--flip", nargs="*", type=fraction, default=list(DEFAULT_FLIP),
                    help=f"PRM flip fractions, each with no noise (default {' '.join(map(str, DEFAULT_FLIP))})")
    ap.add_argument("--seed", type=seed_int, default=0, help="seed of the perturbations and the bootstrap")
    ap.add_argument("--bootstrap", type=int_between(1, MAX_BOOTSTRAP), default=200,
                    help=f"bootstrap resamples (default 200, at most {MAX_BOOTSTRAP})")
    ap.add_argument("--out", default="reports/robustness", help="output folder (default reports/robustness)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    def body() -> int:
        trees = args.trees[0] if len(args.trees) == 1 else args.trees
        md = robustness_report(trees, args.checkpoints, args.train, args.lams, args.noise, args.flip, args.seed,
                               args.bootstrap, args.out, not args.quiet)
        print(f"report: {md}")
        return 0

    return run_cli(prog, body)


if __name__ == "__main__":
    sys.exit(main())
