"""The real TRIM-Thr sweep next to the simulator's (``python -m trim_rl.sim report``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from trim_rl.agents.baselines import ThresholdPolicy
from trim_rl.data.flat import FlatTrees, load_flat
from trim_rl.data.trees import atomic_output
from trim_rl.evaluation.rollout import rollout
from trim_rl.sim.bundled import tree_file
from trim_rl.sim.calibrate import THRESHOLDS, load_targets

START, END = "<!-- sim-report:start -->", "<!-- sim-report:end -->"


def sweep_rows(trees: FlatTrees) -> dict:
    """TRIM-Thr at k = 0 and the table's thresholds, and strong-only, measured on ``trees``."""
    out = {}
    for k in (0.0, *THRESHOLDS):
        r = rollout(ThresholdPolicy(k), trees)
        out[k] = {"accuracy": float(r.correct.mean()), "strong_tokens": float(r.strong_tokens.mean()),
                  "strong_calls": float(r.interventions.mean()),
                  "kept_weak_tokens": float((r.weak_tokens - r.discarded_weak_tokens).mean()),
                  "discarded_weak_tokens": float(r.discarded_weak_tokens.mean())}
    out["strong"] = {"accuracy": float(trees.strong_only_correct.mean()),
                     "strong_tokens": float(trees.strong_only_tokens.mean()),
                     "steps": float(trees.strong_only_steps.mean())}
    return out


def table(sim: dict) -> str:
    tg = load_targets()
    lines = ["| threshold k | accuracy real / sim | strong tokens real / sim | strong calls real / sim "
             "| kept weak tokens real / sim | discarded weak drafts real / sim |", "|---|---|---|---|---|---|"]
    for k in (0.0, *THRESHOLDS):
        r, s = tg["rows"][k], sim[k]
        name = "0.0 (weak only)" if k == 0.0 else f"{k}"
        lines.append(f"| {name} | {100 * r['accuracy']:.1f}% / {100 * s['accuracy']:.1f}% "
                     f"| {r['strong_tokens']:.1f} / {s['strong_tokens']:.1f} | {r['strong_calls']:.2f} / {s['strong_calls']:.2f} "
                     f"| {r['kept_weak_tokens']:.1f} / {s['kept_weak_tokens']:.1f} "
                     f"| {r['discarded_weak_tokens']:.1f} / {s['discarded_weak_tokens']:.1f} |")
    rs, ss = tg["strong"], sim["strong"]
    lines.append(f"| strong only | {100 * rs['accuracy']:.1f}% / {100 * ss['accuracy']:.1f}% "
                 f"| {rs['strong_tokens']:.1f} / {ss['strong_tokens']:.1f} | {rs['steps']:.2f} / {ss['steps']:.2f} (steps) | 0 | 0 |")
    gaps = [abs(sim[k]["accuracy"] - tg["rows"][k]["accuracy"]) * 100 for k in THRESHOLDS]
    lines.append("")
    lines.append(f"Accuracy gap over the routed rows: mean {np.mean(gaps):.1f} points, max {np.max(gaps):.1f}; "
                 "relative errors: strong tokens "
                 + ", ".join(f"{100 * (sim[k]['strong_tokens'] / tg['rows'][k]['strong_tokens'] - 1):+.0f}%" for k in THRESHOLDS)
                 + "; strong calls "
                 + ", ".join(f"{100 * (sim[k]['strong_calls'] / tg['rows'][k]['strong_calls'] - 1):+.0f}%" for k in THRESHOLDS)
                 + ".")
    return "\n".join(lines)


def plot(sim: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tg = load_targets()
    ks = (0.0, *THRESHOLDS)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, rows, strong, style in (("real (MATH-500, Qwen2.5 1.5B/7B)", tg["rows"], tg["strong"], "o-"),
                                      ("simulator (math500 test trees)", sim, sim["strong"], "s--")):
        x = [rows[k]["strong_tokens"] for k in ks] + [strong["strong_tokens"]]
        y = [100 * rows[k]["accuracy"] for k in ks] + [100 * strong["accuracy"]]
        ax.plot(x, y, style, label=name)
    ax.set_xlabel("strong tokens per problem")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("TRIM-Thr sweep k = 0, 0.1, ..., 0.9, strong only")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_output(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def update_readme(readme: str | Path, text: str) -> None:
    body = Path(readme).read_text(encoding="utf-8")
    if START not in body or END not in body:
        raise ValueError(f"{readme}: missing the markers {START} ... {END}")
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{text}\n{END}", body, flags=re.S)
    with atomic_output(readme, "w") as fh:
        fh.write(new)


def check_report(profile: str = "math500", trees: str | None = None, readme: str | None = None) -> None:
    """Every input of :func:`sweep_report` checked before the trees are evaluated or a plot is written."""
    if profile != "math500":
        raise ValueError(f"--profile {profile}: only the math500 profile has a measured sweep to compare with")
    if trees is not None and not Path(trees).is_file():
        raise FileNotFoundError(f"--trees {trees}: " + ("no such file" if not Path(trees).exists()
                                                          else "not a regular file"))
    if readme is not None:
        if not Path(readme).is_file():
            raise FileNotFoundError(f"--readme {readme}: " + ("no such file" if not Path(readme).exists()
                                                              else "not a regular file"))
        try:
            body = Path(readme).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"--readme {readme}: not UTF-8 text") from None
        if START not in body or END not in body:
            raise ValueError(f"--readme {readme}: missing the markers {START} ... {END}")


def sweep_report(profile: str = "math500", seed: int = 0, trees: str | None = None, readme: str | None = None,
                 plot_path: str | None = None) -> str:
    check_report(profile, trees, readme)
    if trees is None:
        trees = str(tree_file(profile, "test", seed))
    sim = sweep_rows(load_flat(trees))
    text = table(sim)
    if plot_path:
        plot(sim, plot_path)
        # the link is read from the page's own folder
        link = os.path.relpath(plot_path, Path(readme).parent) if readme else plot_path
        text += f"\n\n![TRIM-Thr sweep: real vs simulated]({Path(link).as_posix()})"
    if readme:
        update_readme(readme, f"Trees: `{Path(trees).name}` (seed {seed}).\n\n" + text)
    return text
