"""``evaluate.py --report paper``: the benchmark report in the TRIM paper's format.

* Table 1: on the math500 and aime test trees, every baseline (query-level routers, oracles,
  random routers, always-weak/strong) and every TRIM policy present (TRIM-Thr, and the exported
  checkpoints trained on that profile) with CPT(50/80/95%), dIBC and APGR, bootstrap intervals.
* Table 2: policies trained on aime (TRIM-Thr needs no training; the learned query routers are fitted
  on aime's train/val; aime checkpoints when present) evaluated on olympiadbench and minerva.
* PRM diagnostics from the trees' ``step_correct`` labels: precision / recall of "score < 0.5" and
  ROC-AUC of the score for flagging wrong weak steps, by step index.

Markdown (``report.md``) + PNG (one frontier plot per table) + JSON (``paper.json``).

``test_seeds`` (``--test-seeds``, default ``100-109``): every test set is the pool ``sim:PROFILE:test:SEEDS``:
pooled figures with intervals over test problems, and each seed's figures and their spread
(:func:`trim_rl.evaluation.evaluation.evaluate_policies` with groups).  ``--test-seeds 0`` is each
profile's seed 0 alone (math500's bundled trees), in minutes rather than half an hour.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from trim_rl.agents import catalog
from trim_rl.agents.query import _auc
from trim_rl.data.flat import FlatTrees, load_flat
from trim_rl.data.trees import atomic_output
from trim_rl.evaluation.evaluation import (POOL_SEEDS, check_settings, evaluate_policies, finite_ratio, load_pool,
                                           spread)
from trim_rl.evaluation.metrics import json_safe
from trim_rl.evaluation.query_sweep import QueryContext
from trim_rl.evaluation.report import check_output_folder, format_spread, write_all
from trim_rl.evaluation.sweep import find_checkpoints
from trim_rl.resources import project_folder
from trim_rl.sim.bundled import check_tree_spec, generate_trees, parse_seeds, tree_file

#: Table 1's policies: every step-level family and every query-level router of the policy table
STEP_POLICIES = list(catalog.names(catalog.STEP))
QUERY_POLICIES = list(catalog.names(catalog.QUERY))
TABLE1_PROFILES = ("math500", "aime")
CROSS_TARGETS = ("olympiadbench", "minerva")
#: Table 2's policies (the learned query routers fitted on aime)
CROSS_POLICIES = ["thr", "oracle-step", "oracle-query", "sw", "mf", "clf", "automix"]


def _trees(profile: str, split: str, progress: bool) -> FlatTrees:
    return load_flat(tree_file(profile, split, progress=progress))


def _pool_specs(test_seeds: str) -> dict[str, str]:
    """Each test profile's pool of ``test_seeds``: ``sim:PROFILE:test:SEEDS``."""
    return {p: f"sim:{p}:test:{test_seeds}" for p in (*TABLE1_PROFILES, *CROSS_TARGETS)}


def check_test_seeds(test_seeds: str | None) -> None:
    """``--test-seeds`` (N, A-B or a comma list of those) checked for every test profile, generating nothing."""
    if test_seeds is None:
        return
    if not isinstance(test_seeds, str) or ":" in test_seeds:
        raise ValueError(f"--test-seeds: expected N, A-B or a comma list of those, got {test_seeds!r}")
    check_tree_spec(list(_pool_specs(test_seeds).values()), "--test-seeds")


def _test_trees(profile: str, test_seeds: str | None, progress: bool) -> tuple[FlatTrees, list | None, str]:
    """A profile's test trees, their groups (one per seed; None for the bundled seed) and their label."""
    if test_seeds is None:
        return _trees(profile, "test", progress), None, f"sim:{profile}:test"
    spec = _pool_specs(test_seeds)[profile]
    trees, groups = load_pool(spec, progress)
    return trees, groups, spec


def _checkpoints_for(paths, profile: str) -> list:
    if not paths:  # the shipped checkpoints: checkpoints/NAME and checkpoints/FAMILY/NAME
        default = project_folder("checkpoints")
        paths = [str(default)] if any(default.rglob("policy.json")) else []
    if not paths:
        return []
    return [c for c in find_checkpoints(paths) if trained_on(c.meta) == profile]


def trained_on(meta: dict) -> str | None:
    """The simulator profile a checkpoint was trained on: that of its training trees when they are
    ``sim:PROFILE:...`` (an env YAML such as math500x12 draws more trees of one profile), else its
    env's name."""
    source = meta.get("source") or {}
    train = source.get("train")
    specs = train if isinstance(train, list) else [train]
    profiles = {s.split(":")[1] for s in specs if isinstance(s, str) and s.startswith("sim:") and s.count(":") >= 2}
    return profiles.pop() if len(profiles) == 1 else source.get("env")


def prm_diagnostics(trees: FlatTrees, threshold: float = 0.5, max_index: int = 10) -> list[dict]:
    """Per step index (1-based; the last bin pools the rest): how well the weak step's PRM score flags
    a wrong step (``step_correct`` = 0), over every weak candidate step in the trees."""
    lab = trees.weak_step_correct
    ok = lab >= 0
    idx = np.minimum(trees.depth + 1, max_index)
    rows = []
    for i in range(1, max_index + 1):
        m = ok & (idx == i)
        if not m.any():
            continue
        wrong = lab[m] == 0
        score = trees.weak_prm[m]
        flag = score < threshold
        tp = int((flag & wrong).sum())
        rows.append({
            "step": f"{i}+" if i == max_index else str(i), "steps": int(m.sum()), "wrong_rate": float(wrong.mean()),
            "precision": tp / max(int(flag.sum()), 1), "recall": tp / max(int(wrong.sum()), 1),
            "roc_auc": _auc(-score, wrong),
        })
    return rows


def _fmt(v, pct=False, d=1):
    if v is None or (isinstance(v, float) and (math.isnan(v))):
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{d}f}{'%' if pct else ''}"


def _ci(iv, d=1):
    if not iv or iv[0] is None or (isinstance(iv[0], float) and math.isnan(iv[0])):
        return ""
    return f" [{_fmt(iv[0], d=d)}, {_fmt(iv[1], d=d)}]"


def _table(result: dict, level: str = "80") -> list[str]:
    """The policies' rows; a pooled result also gets the per-seed spread of CPT(``level``%) in the column
    after it (the table's point: 80%, or 50% where the policies reach no more)."""
    pooled = "pool" in result
    cols = ["CPT(50%)", "CPT(80%)", "CPT(95%)", "dIBC", "APGR", "ROC-AUC weak fails (test)"]
    at = ("50", "80", "95").index(level) + 1  # after the pooled CPT(level%)
    if pooled:
        cols.insert(at, f"CPT({level}%) per seed")
    lines = ["| policy | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m in result["policies"].values():
        iv = m["intervals"]
        auc = (m.get("diagnostics") or {}).get("test_auc_weak_fails")
        cells = [f"{_fmt(m['cpt'][k], True)}{_ci(iv['cpt'][k])}" for k in ("50", "80", "95")]
        cells += [f"{_fmt(m['dibc'], d=2)}{_ci(iv['dibc'], 2)}", f"{_fmt(m['apgr'], d=3)}{_ci(iv['apgr'], 3)}",
                  _fmt(auc, d=3) if auc is not None else ""]
        if pooled:
            cells.insert(at, format_spread(m["spread"][f"cpt{level}"], 1, True))
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    for name, why in (result.get("not_applicable") or {}).items():
        lines.append(f"| {name} | " + "n/a | " * (len(cols) - 1) + f"{why.get('not_applicable', '')} |")
    return lines


def _ratio_line(result: dict) -> str:
    pol = result["policies"]
    q = {k: v["cpt"]["80"] for k, v in pol.items() if k in ("sw", "mf", "clf", "automix", "automix-min")}
    finite = {k: v for k, v in q.items() if v is not None and math.isfinite(v)}
    thr = pol.get("thr", {}).get("cpt", {}).get("80")
    if not finite or thr is None or not math.isfinite(thr):
        return ""
    best = min(finite, key=finite.get)
    per_seed = ""
    if "pool" in result:  # the same ratio on each seed alone (undefined where the router never reaches 80%)
        sp = spread(finite_ratio(pol["thr"]["per_seed"]["cpt80"], pol[best]["per_seed"]["cpt80"]))
        per_seed = f"; per seed {format_spread(sp, 2)}"
    return (f"TRIM-Thr's CPT(80%) is {thr / finite[best]:.2f}x that of the best query-level router "
            f"({pol[best]['label']}, {finite[best]:.1f}%{per_seed}).")


def _pool_header(test_seeds: str, n_seeds: int) -> list[str]:
    """The report's line on which test seeds were pooled."""
    if n_seeds == 1:
        return [f"Test trees: seed {test_seeds} of every profile (`sim:PROFILE:test:{test_seeds}`).", ""]
    return [f"Test trees: the pool of test seeds {test_seeds} of every profile (`sim:PROFILE:test:{test_seeds}`, "
            f"{n_seeds} seeds): figures pooled over all its trees, intervals from a bootstrap over test problems "
            "(all of a problem's trajectories on every seed resampled together); \"per seed\": mean ± sd [min, max] "
            "of each seed evaluated alone (every figure's spread in PROFILE/report.md).", ""]


def _trees_note(res: dict) -> str:
    """``N test trees``, with the problems and seeds of a pool."""
    pool = res.get("pool")
    if not pool:
        return f"{res['n_problems']} test trees"
    return f"{res['n_problems']} test trees of {pool['n_test_problems']} problems, {len(pool['seeds'])} seeds"


def paper_report(out: str | Path, checkpoints=None, n_boot: int = 1000, seed: int = 0, routing_errors: float = 0.0,
                 progress: bool = True, test_seeds: str | None = POOL_SEEDS) -> dict:
    """``evaluate.py --report paper`` (its command line): Table 1 on the math500 and aime test trees,
    Table 2 across benchmarks, Pareto plots and PRM diagnostics, written into ``out``; returns the
    summary.  ``test_seeds`` (default ``100-109``, the README's pool): every test set is that pool of
    seeds; ``None``: each profile's seed 0 alone (math500's bundled).  Everything is checked before any
    tree is generated."""
    check_settings(n_boot, seed, routing_errors)
    check_test_seeds(test_seeds)
    check_output_folder(out, "--out")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"table1": {}, "table2": {}, "prm_diagnostics": {}, "routing_errors": routing_errors}
    if test_seeds is not None:
        # every test seed generated first, under one bar, rather than one profile's pool between evaluations
        summary["test_trees"] = _pool_specs(test_seeds)
        generate_trees(list(summary["test_trees"].values()), progress=progress)
    md = ["# Benchmark report (TRIM paper format)", "",
          "Simulated trees of the calibrated simulator (see README); costs in % of always-strong tokens; "
          f"95% bootstrap intervals over problems ({n_boot} resamples). Learned query routers are fitted on each "
          "profile's train split and tuned on its val split only.", ""]
    if test_seeds is not None:
        md += _pool_header(test_seeds, len(parse_seeds(test_seeds, summary["test_trees"]["math500"])))
    if routing_errors:
        md += [f"Routing-error ablation: every step policy's decisions flipped with probability {routing_errors}.", ""]
    for profile in TABLE1_PROFILES:
        test, groups, label = _test_trees(profile, test_seeds, progress)
        ctx = QueryContext(_trees(profile, "train", progress), _trees(profile, "val", progress), seed)
        ck = _checkpoints_for(checkpoints, profile)
        res = evaluate_policies(test, STEP_POLICIES + QUERY_POLICIES, n_boot=n_boot, seed=seed,
                                routing_errors=routing_errors, progress=progress, trees_label=label,
                                checkpoints=ck, query_ctx=ctx, groups=groups)
        write_all(out / profile, res)
        summary["table1"][profile] = res
        diag = prm_diagnostics(test)
        summary["prm_diagnostics"][profile] = diag
        md += [f"## Table 1: {profile} ({_trees_note(res)})", "", *_table(res), "", _ratio_line(res), "",
               f"![{profile} frontiers]({profile}/frontier.png)", ""]
    aime_ctx = QueryContext(_trees("aime", "train", progress), _trees("aime", "val", progress), seed)
    aime_ck = _checkpoints_for(checkpoints, "aime")
    md += ["## Table 2: trained on aime, evaluated on other benchmarks", "",
           "TRIM-Thr has no trained parameter; the learned query routers are fitted on aime's train/val; "
           f"TRIM checkpoints trained on aime: {len(aime_ck) or 'none present'}.", ""]
    for target in CROSS_TARGETS:
        test, groups, label = _test_trees(target, test_seeds, progress)
        res = evaluate_policies(test, CROSS_POLICIES, n_boot=n_boot, seed=seed, routing_errors=routing_errors,
                                progress=progress, trees_label=label, checkpoints=aime_ck, query_ctx=aime_ctx,
                                groups=groups)
        write_all(out / f"aime_to_{target}", res)
        summary["table2"][target] = res
        # on these harder profiles no step router reaches 80% of the gap within the trained budgets: 50% is the point
        md += [f"### aime -> {target} ({_trees_note(res)})", "", *_table(res, "50"), "",
               f"![aime to {target}](aime_to_{target}/frontier.png)", ""]
    md += ["## PRM diagnostics (weak steps, flag = score < 0.5)", ""]
    if test_seeds is not None:
        md += [f"Over every weak step of each profile's test seeds {test_seeds} together.", ""]
    for profile, rows in summary["prm_diagnostics"].items():
        md += [f"### {profile}", "", "| step | steps | wrong rate | precision | recall | ROC-AUC |", "|---|---|---|---|---|---|"]
        md += [f"| {r['step']} | {r['steps']} | {r['wrong_rate']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} "
               f"| {_fmt(r['roc_auc'], d=3)} |" for r in rows]
        md.append("")
    with atomic_output(out / "paper.json", "w") as fh:
        json.dump(json_safe(summary), fh, indent=1, allow_nan=False)
    with atomic_output(out / "report.md", "w") as fh:
        fh.write("\n".join(md) + "\n")
    return summary
