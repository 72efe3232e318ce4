"""Write an evaluation's files: ``metrics.json``, ``points.csv``, ``report.md`` and ``frontier.png``."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from trim_rl.agents import catalog
from trim_rl.evaluation.metrics import json_safe
from trim_rl.fsutil import atomic_output, folder_beside

DIBC_NOTE = ("dIBC is the mean over the frontier's operating points with cost > 0 (the always-weak anchor "
             "excluded) of (IBC - IBC_random) / IBC_random, IBC = (acc - acc_weak) / (cost - 0), "
             "IBC_random = (acc_strong - acc_weak) / 100.")


def check_output_folder(out: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse an output folder that is a file or lies under one, before any work is done for it."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"{flag} {out}: exists and is not a folder")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{flag} {out}: {parent} is a file, not a folder")
            # the files are built in a temporary folder beside out: its parent must take them
            if not os.access(p if p.exists() else parent, os.W_OK) or not os.access(parent, os.W_OK):
                raise PermissionError(f"{flag} {out}: not writable")
            break


def _fmt(v, digits=1, pct=False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "inf" if v == float("inf") else "n/a"
    return f"{v:.{digits}f}{'%' if pct else ''}"


def _ci(pair, digits=1) -> str:
    if not pair or pair[0] is None:
        return ""
    return f" [{_fmt(pair[0], digits)}, {_fmt(pair[1], digits)}]"


def write_metrics(out: Path, result: dict) -> None:
    with atomic_output(out / "metrics.json", "w") as fh:
        json.dump(json_safe(result), fh, indent=1, allow_nan=False)
        fh.write("\n")


def write_points(out: Path, result: dict) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["policy", "setting", "requested_budget", "accuracy", "cost_pct", "strong_tokens", "weak_tokens",
                "interventions"])
    for name, m in result["policies"].items():
        for p in m["points"]:
            rb = p.get("requested_budget")
            w.writerow([name, p["setting"], "" if rb is None else f"{rb:g}", f"{p['accuracy']:.6f}",
                        f"{p['cost_pct']:.4f}", f"{p['strong_tokens']:.3f}",
                        f"{p.get('weak_tokens', float('nan')):.3f}", f"{p.get('interventions', float('nan')):.4f}"])
    with atomic_output(out / "points.csv", "w") as fh:
        fh.write(buf.getvalue())


def format_spread(sp: dict, digits: int = 1, pct: bool = False) -> str:
    """``mean ± sd [min, max]`` over seeds (``, inf on k`` where a seed never reaches the level)."""
    if sp is None:
        return ""
    u = "%" if pct else ""
    if not math.isfinite(sp["mean"] if sp["mean"] is not None else float("nan")):
        return "inf on every seed" if sp.get("n_inf") else "n/a"
    extra = f", inf on {sp['n_inf']} of {sp['n']}" if sp.get("n_inf") else ""
    return (f"{sp['mean']:.{digits}f}{u} ± {sp['sd']:.{digits}f} [{sp['min']:.{digits}f}, "
            f"{_fmt(sp['max'], digits)}]{extra}")


def inf_notes(result: dict) -> list[str]:
    """Why a CPT is ``inf``: the frontier ends (at its most expensive point) before the level."""
    ref = result["references"]
    gap = ref["acc_strong"] - ref["acc_weak"]
    notes = []
    for m in result["policies"].values():
        never = [k for k in ("50", "80", "95") if m["cpt"].get(k) in (None, math.inf)]
        if not never or gap == 0 or len(m["points"]) < 2 and m["points"][0]["cost_pct"] == 0:
            continue
        fr_c, fr_a = m["frontier"]["cost_pct"], m["frontier"]["accuracy"]
        best = max(range(len(fr_a)), key=lambda i: fr_a[i])
        reached = 100 * (fr_a[best] - ref["acc_weak"]) / gap
        levels = "/".join(never)
        why = (" (a checkpoint family's frontier ends at its largest budget: add checkpoints of larger budgets to "
               "reach it)" if any(p.get("requested_budget") is not None or isinstance(p["setting"], float)
                                  for p in m["points"]) and m["label"] not in _BUILTIN_LABELS else "")
        notes.append(f"{m['label']}: CPT({levels}%) inf = never reached: its best point, at {fr_c[best]:.1f}% cost, "
                     f"recovers {reached:.0f}% of the gap and the frontier ends there{why}")
    return notes


# the step-level families' labels: no checkpoint family's note is added to theirs
_BUILTIN_LABELS = frozenset(catalog.STEP_LABELS.values())


def markdown(result: dict) -> str:
    ref = result["references"]
    pool = result.get("pool")
    if pool:
        where = (f"a pool of {len(pool['seeds'])} test seeds ({', '.join(pool['seeds'])}): {result['n_problems']} "
                 f"trajectories of {pool['n_test_problems']} test problems")
        boot = (f"Intervals: bootstrap 95% over test problems (all of a problem's trajectories on every seed resampled "
                f"together; {result['n_boot']} resamples).  Per seed: mean ± sd [min, max] over the {len(pool['seeds'])} "
                "seeds, each evaluated alone.")
    else:
        where = f"{result['n_problems']} problems"
        boot = f"Intervals: bootstrap 95% over problems ({result['n_boot']} resamples)."
    lines = [f"# Evaluation on `{result['trees']}`", "",
             f"{where}; always-weak accuracy {100 * ref['acc_weak']:.1f}%, "
             f"always-strong {100 * ref['acc_strong']:.1f}% at {ref['strong_only_tokens']:.1f} strong tokens per problem "
             f"(= 100% cost). {boot}", ""]
    lines += main_table(result) + [""]
    notes = inf_notes(result)
    if notes:
        lines += ["inf: " + "; ".join(notes) + ".", ""]
    if pool:
        lines += ["Per-seed spread (each seed alone; mean ± sd [min, max]):", "",
                  "| policy | CPT(50%) | CPT(80%) | CPT(95%) | dIBC | APGR |", "|---|---|---|---|---|---|"]
        for m in result["policies"].values():
            sp = m["spread"]
            lines.append(f"| {m['label']} | " + " | ".join(
                [format_spread(sp[f"cpt{k}"], 1, True) for k in ("50", "80", "95")]
                + [format_spread(sp["dibc"], 2), format_spread(sp["apgr"], 3)]) + " |")
        lines.append("")
    ratios = result.get("ratios")
    if ratios and ratios["cpt"] and ratios["reference"] in result["policies"]:
        ref_label = result["policies"][ratios["reference"]]["label"]
        lines += [f"CPT relative to {ref_label}'s (lower is better): pooled [bootstrap 95%]; per seed mean ± sd "
                  "[min, max].", "", f"| policy | CPT(50%) / {ref_label} | CPT(80%) / {ref_label} | "
                  f"CPT(95%) / {ref_label} |", "|---|---|---|---|"]
        for name, entry in ratios["cpt"].items():
            if name not in result["policies"]:
                continue
            lines.append(f"| {result['policies'][name]['label']} | " + " | ".join(
                f"{_ratio(entry[k])}" for k in ("50", "80", "95")) + " |")
        lines.append("")
    budget_rows = [(m, i, p) for m in result["policies"].values() for i, p in enumerate(m["points"])
                   if p.get("requested_budget") is not None]
    if budget_rows:
        per_seed = " | spent per seed [min, max]" if pool else ""
        lines += ["Budgets: what each checkpoint was asked to spend and what it spent on these trees.", "",
                  f"| policy | requested budget | spent{per_seed} | accuracy | lambda |",
                  "|---|---|---|---|---|" + ("---|" if pool else "")]
        for m, i, p in budget_rows:
            seeds = ""
            if pool:
                costs = [c[i] for c in m["per_seed"]["cost_pct"]]
                seeds = f" | [{min(costs):.1f}, {max(costs):.1f}]"
            lines.append(f"| {m['label']} | {p['requested_budget']:g}% | {p['cost_pct']:.1f}%{seeds} | "
                         f"{100 * p['accuracy']:.1f}% | {p['setting']:.3g} |")
        lines.append("")
    lines += ["CPT(x%): least cost (% of always-strong tokens) at which the policy's upper frontier recovers x% of "
              "the weak-to-strong accuracy gap (linear interpolation; inf = never).  APGR: area under the PGR-vs-cost "
              "frontier over [0, 100%], flat after the last point.  " + DIBC_NOTE, "", "![frontier](frontier.png)", ""]
    return "\n".join(lines)


def _ratio(e: dict) -> str:
    if e["pooled"] is None or not math.isfinite(e["pooled"]):
        return "n/a"
    iv = e["interval"]
    ci = f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv and iv[0] is not None and math.isfinite(iv[0]) else ""
    return f"{e['pooled']:.2f}x{ci}; per seed {format_spread(e['spread'], 2)}"


def main_table(result: dict) -> list[str]:
    """The report's main table (Markdown): pooled figures with intervals, and on a pool each
    policy's per-seed CPT(80%) beside them."""
    pool = result.get("pool")
    head = "| policy | points | CPT(50%) | CPT(80%) | CPT(95%) | dIBC | APGR | best accuracy |"
    if pool:
        head += " CPT(80%) per seed |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for _name, m in result["policies"].items():
        iv = m["intervals"]
        best = max(p["accuracy"] for p in m["points"])
        row = (f"| {m['label']} | {len(m['points'])} "
               + "".join(f"| {_fmt(m['cpt'][k], 1, True)}{_ci(iv['cpt'][k])} " for k in ("50", "80", "95"))
               + f"| {_fmt(m['dibc'], 2)}{_ci(iv['dibc'], 2)} | {_fmt(m['apgr'], 3)}{_ci(iv['apgr'], 3)} | {100 * best:.1f}% |")
        if pool:
            row += f" {format_spread(m['spread']['cpt80'], 1, True)} |"
        lines.append(row)
    return lines


def terminal_table(result: dict) -> str:
    """The main table for the terminal: aligned columns, pooled figures with intervals, the per-seed
    CPT(80%) spread on a pool, ratios to TRIM-Thr and why a CPT is inf."""
    pool = result.get("pool")
    head = ["policy", "CPT(50%)", "CPT(80%)", "CPT(95%)", "dIBC", "APGR"] + (["CPT(80%) per seed"] if pool else [])
    rows = []
    for m in result["policies"].values():
        iv = m["intervals"]
        row = [m["label"]] + [f"{_fmt(m['cpt'][k], 1, True)}{_ci(iv['cpt'][k])}" for k in ("50", "80", "95")]
        row += [f"{_fmt(m['dibc'], 2)}{_ci(iv['dibc'], 2)}", f"{_fmt(m['apgr'], 3)}{_ci(iv['apgr'], 3)}"]
        if pool:
            row.append(format_spread(m["spread"]["cpt80"], 1, True))
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    ref = result["references"]
    if pool:
        title = (f"pooled over {len(pool['seeds'])} test seeds ({result['n_problems']} trajectories); "
                 f"[bootstrap 95% over test problems]; per seed: mean ± sd [min, max]")
    else:
        title = f"{result['trees']}: {result['n_problems']} problems; [bootstrap 95%]"
    out = [title, f"always-weak {100 * ref['acc_weak']:.1f}%, always-strong {100 * ref['acc_strong']:.1f}% "
           "(= 100% cost); CPT(x%): least cost reaching x% of the gap, lower is better", ""]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    ratios = result.get("ratios")
    if ratios and ratios["cpt"] and ratios["reference"] in result["policies"]:
        ref_label = result["policies"][ratios["reference"]]["label"]
        out += ["", f"CPT(80%) / {ref_label}'s:"]
        for name, entry in ratios["cpt"].items():
            if name not in result["policies"]:
                continue
            out.append(f"  {result['policies'][name]['label']}: {_ratio(entry['80'])}")
    for note in inf_notes(result):
        out += ["", "inf: " + note]
    return "\n".join(out)


#: distinct colours, none repeated before all are used (matplotlib's tab10 and darker / extra hues)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#393b79", "#637939", "#e7ba52", "#7b4173", "#ad494a", "#3182bd", "#31a354")
LINE_STYLES = ("-", "--", "-.", ":")


def line_styles(n: int) -> list[tuple[str, str]]:
    """(colour, line style) for ``n`` frontiers: every colour of ``PALETTE`` once, then the same colours
    dashed, and so on, so no two of up to 64 policies look alike."""
    k = len(PALETTE)
    return [(PALETTE[i % k], LINE_STYLES[(i // k) % len(LINE_STYLES)]) for i in range(n)]


# how a built-in policy is drawn (keyed by its canonical name in the policy table), whatever its place in
# the list: TRIM-Thr black, oracles dotted, query-level routers dashed, the random router dash-dotted;
# always-weak / -strong are points
FIXED = {"thr": ("#000000", "-"), "always-weak": ("#7f7f7f", None), "always-strong": ("#4d4d4d", None),
         "random": ("#a6a6a6", "-."), "oracle-step": ("#b15928", ":"), "oracle-query": ("#fb9a99", ":")}


def _styles(result: dict) -> dict[str, tuple[str, str | None]]:
    """(colour, line style; None for a point) per policy: fixed ones for the built-ins, the palette for
    the rest (checkpoint families first, solid; query-level routers dashed)."""
    names = list(result["policies"])
    free = iter(line_styles(len(names)))
    out = {}

    def query_level(name: str) -> bool:
        return catalog.is_builtin(name, catalog.QUERY)

    for name in sorted(names, key=query_level):
        if name in FIXED:
            out[name] = FIXED[name]
        else:
            colour, ls = next(free)
            out[name] = (colour, "--" if query_level(name) and ls == "-" else ls)
    return out


def plot_frontiers(out: Path, result: dict) -> None:
    """Two panels: the budgets users train for (0-40% cost) and the full range, one style per policy,
    bootstrap bands around the frontiers, single-point policies as markers, the legend beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, full) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [2, 1]})
    styles = _styles(result)
    ref = result["references"]
    top_main = 100 * ref["acc_strong"]
    for name, m in result["policies"].items():
        colour, ls = styles[name]
        xs = [p["cost_pct"] for p in m["points"]]
        ys = [100 * p["accuracy"] for p in m["points"]]
        for a in (ax, full):
            if len(m["points"]) == 1:  # always-weak / -strong: a point, not a line from the weak anchor
                marker = "o" if xs[0] == 0 else "s"
                a.plot(xs, ys, marker, color=colour, ms=7, mfc="white", mew=1.6, label=m["label"] if a is ax else None)
                continue
            fc = m["frontier"]["cost_pct"]
            fa = [100 * v for v in m["frontier"]["accuracy"]]
            # bands for the routers compared, not for the references (oracles, random), which would hide them
            band = m["frontier"].get("accuracy_interval") if name not in FIXED or name == "thr" else None
            if band and all(b and b[0] is not None and math.isfinite(b[0]) for b in band):
                a.fill_between(fc, [100 * b[0] for b in band], [100 * b[1] for b in band],
                               color="#888888" if colour == "#000000" else colour, alpha=0.1, lw=0)
            a.plot(fc, fa, ls=ls, color=colour, lw=1.8 if ls == "-" else 1.4, label=m["label"] if a is ax else None)
            a.plot(xs, ys, ".", color=colour, ms=3.5)
        # the step-level oracle leaves the main panel at the top: its range would squeeze the routers
        inside = [y for x, y in zip(xs, ys) if x <= 40] if name != "oracle-step" else []
        if inside:
            top_main = max(top_main, max(inside))
    for a in (ax, full):
        a.axhline(100 * ref["acc_strong"], color="grey", ls=":", lw=1)
        a.grid(alpha=0.3)
        a.set_xlabel("cost: strong tokens (% of always-strong)")
    ax.set_xlim(0, 40)
    ax.set_ylim(100 * ref["acc_weak"] - 3, top_main + 3)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("budgets users train for (0-40% cost)", fontsize=10)
    full.set_xlim(0, 105)
    full.set_title("full range", fontsize=10)
    pool = result.get("pool")
    title = (f"{_short_trees(result['trees'])}: pooled over {len(pool['seeds'])} test seeds, 95% bands"
             if pool else f"{_short_trees(result['trees'])}, 95% bands")
    fig.suptitle(title, fontsize=11)
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    with atomic_output(out / "frontier.png", "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _short_trees(label: str) -> str:
    """A tree spec as a title: file paths by their names."""
    return " ".join(w if w.startswith("sim:") or "/" not in w else Path(w).name for w in label.split(" "))


OUTPUTS = ("metrics.json", "points.csv", "report.md", "frontier.png")


def write_all(out: Path, result: dict) -> None:
    """Write the four files as one set: all are built in a temporary folder beside ``out``, then
    moved in with SIGINT / SIGTERM held back, so ``out`` never mixes files of two evaluations."""
    import signal

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    with folder_beside(out) as tmp:
        write_metrics(tmp, result)
        write_points(tmp, result)
        plot_frontiers(tmp, result)
        with atomic_output(tmp / "report.md", "w") as fh:
            fh.write(markdown(result))
        out.mkdir(parents=True, exist_ok=True)
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for name in OUTPUTS:
                os.replace(tmp / name, out / name)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
