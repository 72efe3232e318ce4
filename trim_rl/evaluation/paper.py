"""``evaluate.py --report paper``: the benchmark report in the TRIM paper's format.

* Table 1: on the math500 and aime test trees, every baseline (query-level routers, oracles,
  random routers, always-weak/strong) and every TRIM policy present (TRIM-Thr, and the exported
  checkpoints trained on that profile) with CPT(50/80/95%), dIBC and APGR, bootstrap intervals.
* Table 2: policies trained on aime (TRIM-Thr needs no training; the learned query routers are fitted
  on aime's train/val; aime checkpoints when present) evaluated on olympiadbench and minerva.
* PRM diagnostics from the trees' ``step_correct`` labels: precision / recall of "score < 0.5" and
  ROC-AUC of the score for flagging wrong weak steps, by step index.

Markdown (``report.md``) + PNG (one frontier plot per table) + JSON (``paper.json``).
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
from trim_rl.evaluation.evaluation import check_settings, evaluate_policies
from trim_rl.evaluation.metrics import json_safe
from trim_rl.evaluation.query_sweep import QueryContext
from trim_rl.evaluation.report import check_output_folder, write_all
from trim_rl.evaluation.sweep import find_checkpoints
from trim_rl.resources import project_folder
from trim_rl.sim.bundled import tree_file

#: Table 1's policies: every step-level family and every query-level router of the policy table
STEP_POLICIES = list(catalog.names(catalog.STEP))
QUERY_POLICIES = list(catalog.names(catalog.QUERY))
TABLE1_PROFILES = ("math500", "aime")
CROSS_TARGETS = ("olympiadbench", "minerva")


def _trees(profile: str, split: str, progress: bool) -> FlatTrees:
    return load_flat(tree_file(profile, split, progress=progress))


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


def _table(result: dict) -> list[str]:
    lines = ["| policy | CPT(50%) | CPT(80%) | CPT(95%) | dIBC | APGR | ROC-AUC weak fails (test) |",
             "|---|---|---|---|---|---|---|"]
    for m in result["policies"].values():
        iv = m["intervals"]
        auc = (m.get("diagnostics") or {}).get("test_auc_weak_fails")
        lines.append(f"| {m['label']} " + "".join(f"| {_fmt(m['cpt'][k], True)}{_ci(iv['cpt'][k])} " for k in ("50", "80", "95"))
                     + f"| {_fmt(m['dibc'], d=2)}{_ci(iv['dibc'], 2)} | {_fmt(m['apgr'], d=3)}{_ci(iv['apgr'], 3)} "
                     + f"| {_fmt(auc, d=3) if auc is not None else ''} |")
    for name, why in (result.get("not_applicable") or {}).items():
        lines.append(f"| {name} | n/a | n/a | n/a | n/a | n/a | {why.get('not_applicable', '')} |")
    return lines


def _ratio_line(result: dict) -> str:
    pol = result["policies"]
    q = {k: v["cpt"]["80"] for k, v in pol.items() if k in ("sw", "mf", "clf", "automix", "automix-min")}
    finite = {k: v for k, v in q.items() if v is not None and math.isfinite(v)}
    thr = pol.get("thr", {}).get("cpt", {}).get("80")
    if not finite or thr is None or not math.isfinite(thr):
        return ""
    best = min(finite, key=finite.get)
    return (f"TRIM-Thr's CPT(80%) is {thr / finite[best]:.2f}x that of the best query-level router "
            f"({pol[best]['label']}, {finite[best]:.1f}%).")


def paper_report(out: str | Path, checkpoints=None, n_boot: int = 1000, seed: int = 0, routing_errors: float = 0.0,
                 progress: bool = True) -> dict:
    """``evaluate.py --report paper`` (its command line): Table 1 on the math500 and aime test trees,
    Table 2 across benchmarks, Pareto plots and PRM diagnostics, written into ``out``; returns the
    summary.  Everything is checked before any tree is generated."""
    check_settings(n_boot, seed, routing_errors)
    check_output_folder(out, "--out")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"table1": {}, "table2": {}, "prm_diagnostics": {}, "routing_errors": routing_errors}
    md = ["# Benchmark report (TRIM paper format)", "",
          "Simulated trees of the calibrated simulator (see README); costs in % of always-strong tokens; "
          f"95% bootstrap intervals over problems ({n_boot} resamples). Learned query routers are fitted on each "
          "profile's train split and tuned on its val split only.", ""]
    if routing_errors:
        md += [f"Routing-error ablation: every step policy's decisions flipped with probability {routing_errors}.", ""]
    for profile in TABLE1_PROFILES:
        test = _trees(profile, "test", progress)
        ctx = QueryContext(_trees(profile, "train", progress), _trees(profile, "val", progress), seed)
        ck = _checkpoints_for(checkpoints, profile)
        res = evaluate_policies(test, STEP_POLICIES + QUERY_POLICIES, n_boot=n_boot, seed=seed,
                                routing_errors=routing_errors, progress=progress, trees_label=f"sim:{profile}:test",
                                checkpoints=ck, query_ctx=ctx)
        write_all(out / profile, res)
        summary["table1"][profile] = res
        diag = prm_diagnostics(test)
        summary["prm_diagnostics"][profile] = diag
        md += [f"## Table 1: {profile} ({res['n_problems']} test trees)", "", *_table(res), "", _ratio_line(res), "",
               f"![{profile} frontiers]({profile}/frontier.png)", ""]
    aime_ctx = QueryContext(_trees("aime", "train", progress), _trees("aime", "val", progress), seed)
    aime_ck = _checkpoints_for(checkpoints, "aime")
    md += ["## Table 2: trained on aime, evaluated on other benchmarks", "",
           "TRIM-Thr has no trained parameter; the learned query routers are fitted on aime's train/val; "
           f"TRIM checkpoints trained on aime: {len(aime_ck) or 'none present'}.", ""]
    for target in CROSS_TARGETS:
        test = _trees(target, "test", progress)
        res = evaluate_policies(test, ["thr", "oracle-step", "oracle-query", "sw", "mf", "clf", "automix"],
                                n_boot=n_boot, seed=seed, routing_errors=routing_errors, progress=progress,
                                trees_label=f"sim:{target}:test", checkpoints=aime_ck, query_ctx=aime_ctx)
        write_all(out / f"aime_to_{target}", res)
        summary["table2"][target] = res
        md += [f"### aime -> {target} ({res['n_problems']} test trees)", "", *_table(res), "",
               f"![aime to {target}](aime_to_{target}/frontier.png)", ""]
    md += ["## PRM diagnostics (weak steps, flag = score < 0.5)", ""]
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
