"""Write an evaluation's files: ``metrics.json``, ``points.csv``, ``report.md`` and ``frontier.png``."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from trim_rl.eval.metrics import json_safe
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


def markdown(result: dict) -> str:
    ref = result["references"]
    lines = [f"# Evaluation on `{result['trees']}`", "",
             f"{result['n_problems']} problems; always-weak accuracy {100 * ref['acc_weak']:.1f}%, "
             f"always-strong {100 * ref['acc_strong']:.1f}% at {ref['strong_only_tokens']:.1f} strong tokens per problem "
             f"(= 100% cost). Intervals: bootstrap 95% over problems ({result['n_boot']} resamples).", "",
             "| policy | points | CPT(50%) | CPT(80%) | CPT(95%) | dIBC | APGR | best accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for _name, m in result["policies"].items():
        iv = m["intervals"]
        best = max(p["accuracy"] for p in m["points"])
        lines.append(
            f"| {m['label']} | {len(m['points'])} "
            + "".join(f"| {_fmt(m['cpt'][k], 1, True)}{_ci(iv['cpt'][k])} " for k in ("50", "80", "95"))
            + f"| {_fmt(m['dibc'], 2)}{_ci(iv['dibc'], 2)} | {_fmt(m['apgr'], 3)}{_ci(iv['apgr'], 3)} | {100 * best:.1f}% |")
    budget_rows = [(m["label"], p) for m in result["policies"].values() for p in m["points"]
                   if p.get("requested_budget") is not None]
    if budget_rows:
        lines += ["", "Budgets: what each checkpoint was asked to spend and what it spent on these trees.", "",
                  "| policy | requested budget | spent | accuracy | lambda |", "|---|---|---|---|---|"]
        for label, p in budget_rows:
            lines.append(f"| {label} | {p['requested_budget']:g}% | {p['cost_pct']:.1f}% | {100 * p['accuracy']:.1f}% "
                         f"| {p['setting']:.3g} |")
    lines += ["", "CPT(x%): least cost (% of always-strong tokens) at which the policy's upper frontier recovers x% of "
              "the weak-to-strong accuracy gap (linear interpolation; inf = never).  APGR: area under the PGR-vs-cost "
              "frontier over [0, 100%], flat after the last point.  " + DIBC_NOTE, "", "![frontier](frontier.png)", ""]
    return "\n".join(lines)


LINE_STYLES = ("-", "--", "-.", ":")


def line_styles(n: int) -> list[tuple[str, str]]:
    """(colour, line style) for ``n`` frontiers: the ten tab10 colours, then the same colours dashed,
    and so on, so no two of up to 40 policies look alike."""
    return [(f"C{i % 10}", LINE_STYLES[(i // 10) % len(LINE_STYLES)]) for i in range(n)]


def plot_frontiers(out: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = line_styles(len(result["policies"]))
    for (_name, m), (colour, ls) in zip(result["policies"].items(), styles):
        xs = [p["cost_pct"] for p in m["points"]]
        ys = [100 * p["accuracy"] for p in m["points"]]
        ax.plot(m["frontier"]["cost_pct"], [100 * a for a in m["frontier"]["accuracy"]], ls=ls, color=colour, lw=1.5,
                label=m["label"])
        ax.plot(xs, ys, ".", color=colour, ms=4)
    ref = result["references"]
    ax.axhline(100 * ref["acc_strong"], color="grey", ls=":", lw=1)
    ax.set_xlim(0, 105)
    ax.set_xlabel("cost: strong tokens (% of always-strong)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(Path(result["trees"]).name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_output(out / "frontier.png", "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


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
