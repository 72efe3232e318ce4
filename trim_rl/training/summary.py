"""What ``train.py`` prints when its runs end: per run the budget asked, the price found, the spend
measured on the calibration and validation trees, and the validation accuracy (``result.json``).

The table goes to stderr, beside the progress: stdout keeps one ``run: PATH`` line per run, which
scripts read."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def _pct(v) -> str:
    return f"{v:.1f}%" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def summary_table(run_dirs) -> str:
    """An aligned table of the finished runs in ``run_dirs`` (runs without ``result.json`` are left
    out); an empty string when there is none."""
    head = ["budget", "price (lambda)", "spend: calibration", "spend: val", "val accuracy", "run"]
    rows = []
    for d in map(Path, run_dirs):
        try:
            r = json.loads((d / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        budget = r.get("requested_budget")
        lam = r.get("lam")
        rows.append([f"{budget:g}%" if isinstance(budget, (int, float)) else "-",
                     f"{lam:.3g}" if isinstance(lam, (int, float)) else "budget-conditioned",
                     _pct(r.get("calib_cost_pct")), _pct(r.get("val_cost_pct")),
                     _pct(100 * r["val_accuracy"]) if isinstance(r.get("val_accuracy"), (int, float)) else "-",
                     d.name])
    if not rows:
        return ""
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in [head, *rows]]
    return "\n".join(["", "spend in % of always-strong's strong tokens; val accuracy on the validation trees", *lines])


def print_summary(run_dirs, file=None) -> None:
    """Print :func:`summary_table` to ``file`` (default stderr)."""
    text = summary_table(run_dirs)
    if text:
        print(text, file=file or sys.stderr, flush=True)
