"""End-to-end tests of ``python evaluate.py`` on a small generated tree file."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trim_rl.data.flat import load_flat
from trim_rl.sim.generate import generate_file
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

POLICIES = ["thr", "always-weak", "always-strong", "random", "oracle-step", "oracle-query"]
FLAGS = ["--trees", "--policies", "--out", "--bootstrap", "--seed", "--routing-errors", "--quiet", "--checkpoints"]


def _run(*args, timeout=240):
    return subprocess.run([sys.executable, "evaluate.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trees_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("evaltrees") / "small.jsonl.gz"
    generate_file("math500", "test", 0, p, limit=10, draws=4)
    return p


@pytest.fixture(scope="module")
def evaluated(trees_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("evalout") / "report"
    r = _run("--trees", str(trees_file), "--policies", ",".join(POLICIES), "--out", str(out),
             "--bootstrap", "50", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r


# --- an independent implementation of the frontier metrics -----------------------------------
def _frontier(points, acc_weak):
    pts = sorted([(0.0, acc_weak)] + [(p["cost_pct"], p["accuracy"]) for p in points], key=lambda x: (x[0], -x[1]))
    kept, best = [], -1.0
    for c, a in pts:
        if a > best:
            kept.append((c, a))
            best = a
    return [c for c, _ in kept], [a for _, a in kept]


def _cpt(fc, fa, aw, ast, x):
    p = [(a - aw) / (ast - aw) for a in fa]
    t = x / 100
    for i, v in enumerate(p):
        if v >= t:
            if i == 0:
                return fc[0]
            return fc[i - 1] + (t - p[i - 1]) * (fc[i] - fc[i - 1]) / (v - p[i - 1])
    return math.inf


def _apgr(fc, fa, aw, ast):
    p = np.array([(a - aw) / (ast - aw) for a in fa])
    fc = np.array(fc)
    xs = np.append(fc[fc < 100], 100.0)
    ys = np.interp(xs, fc, p)  # flat after the last point, interpolated across 100
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / 100)


def _dibc(fc, fa, aw, ast):
    r = (ast - aw) / 100
    vals = [((a - aw) / c - r) / r for c, a in zip(fc, fa) if c > 0]
    return float(np.mean(vals)) if vals else math.nan


def test_exit_zero_and_files(evaluated):
    out, r = evaluated
    for name in ("metrics.json", "points.csv", "report.md", "frontier.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "metrics.json" in r.stdout


def test_metrics_json_complete(evaluated, trees_file):
    out, _ = evaluated
    m = json.loads((out / "metrics.json").read_text())
    f = load_flat(trees_file)
    assert m["n_problems"] == f.n_trees
    assert m["n_boot"] == 50
    assert set(POLICIES) <= set(m["policies"])
    ref = m["references"]
    assert ref["acc_weak"] == pytest.approx(f.weak_only()["correct"].mean())
    assert ref["acc_strong"] == pytest.approx(f.strong_only_correct.mean())
    for name in POLICIES:
        pm = m["policies"][name]
        for key in ("points", "cpt", "dibc", "apgr", "intervals"):
            assert key in pm, (name, key)
        assert pm["points"], name
        assert set(pm["cpt"]) >= {"50", "80", "95"}
        for key in ("cpt", "dibc", "apgr", "accuracy", "cost_pct"):
            assert key in pm["intervals"], (name, key)
        assert len(pm["intervals"]["accuracy"]) == len(pm["points"])
        for lo, hi in pm["intervals"]["accuracy"]:
            assert lo <= hi
    pts = m["policies"]
    assert len(pts["thr"]["points"]) == 21
    assert len(pts["random"]["points"]) == 11
    assert pts["always-weak"]["points"][0]["cost_pct"] == 0.0
    assert pts["always-weak"]["points"][0]["accuracy"] == pytest.approx(ref["acc_weak"])
    assert pts["always-strong"]["points"][0]["cost_pct"] == pytest.approx(100.0)
    assert pts["always-strong"]["points"][0]["accuracy"] == pytest.approx(ref["acc_strong"])
    # the step-level oracle reaches the best accuracy of every policy that plays paths of the trees
    best = {n: max(p["accuracy"] for p in pts[n]["points"]) for n in POLICIES}
    assert best["oracle-step"] >= max(best["thr"], best["random"], best["always-weak"])


def test_metrics_recomputed_independently(evaluated):
    out, _ = evaluated
    m = json.loads((out / "metrics.json").read_text())
    aw, ast = m["references"]["acc_weak"], m["references"]["acc_strong"]
    assert ast != aw
    finite_cpt = 0
    for name in POLICIES:
        pm = m["policies"][name]
        fc, fa = _frontier(pm["points"], aw)
        np.testing.assert_allclose(pm["frontier"]["cost_pct"], fc, err_msg=name)
        np.testing.assert_allclose(pm["frontier"]["accuracy"], fa, err_msg=name)
        for level in (50, 80, 95):
            mine = _cpt(fc, fa, aw, ast, level)
            got = pm["cpt"][str(level)]
            if math.isinf(mine):
                assert got is None, (name, level, got)  # inf is written as null
            else:
                finite_cpt += 1
                assert got == pytest.approx(mine, abs=1e-9), (name, level)
        assert pm["apgr"] == pytest.approx(_apgr(fc, fa, aw, ast), abs=1e-9), name
        d = _dibc(fc, fa, aw, ast)
        if math.isnan(d):
            assert pm["dibc"] is None, name
        else:
            assert pm["dibc"] == pytest.approx(d, abs=1e-9), name
    assert finite_cpt >= 3  # the comparison is not vacuous


def test_points_csv_matches_json(evaluated):
    out, _ = evaluated
    m = json.loads((out / "metrics.json").read_text())
    with open(out / "points.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {"policy", "setting", "accuracy", "cost_pct", "strong_tokens"} <= set(rows[0])
    expected = [(n, p) for n, pm in m["policies"].items() for p in pm["points"]]
    assert len(rows) == len(expected)
    for row, (name, p) in zip(rows, expected):
        assert row["policy"] == name
        assert float(row["accuracy"]) == pytest.approx(p["accuracy"], abs=1e-6)
        assert float(row["cost_pct"]) == pytest.approx(p["cost_pct"], abs=1e-4)


def test_report_md_lists_every_policy(evaluated):
    out, _ = evaluated
    text = (out / "report.md").read_text()
    m = json.loads((out / "metrics.json").read_text())
    for pm in m["policies"].values():
        assert f"| {pm['label']} |" in text
    assert "frontier.png" in text
    assert "dIBC" in text


def test_help_mentions_every_flag():
    import re

    r = _run("--help", timeout=120)
    assert r.returncode == 0, r.stderr
    shown = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)(?![\w-])", r.stdout))  # whole tokens only
    want = set(FLAGS) | {"--train-trees", "--val-trees", "--report", "--prm-noise", "--prm-flip", "--robustness"}
    assert want <= shown, want - shown


def test_unknown_policy_fails_with_message(trees_file, tmp_path):
    r = _run("--trees", str(trees_file), "--policies", "thr,no-such-router", "--out", str(tmp_path / "o"),
             "--bootstrap", "10", "--quiet", timeout=120)
    assert r.returncode != 0
    assert "no-such-router" in r.stderr
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_missing_tree_file_fails(tmp_path):
    r = _run("--trees", str(tmp_path / "nope.jsonl.gz"), "--policies", "thr", "--out", str(tmp_path / "o"),
             "--quiet", timeout=120)
    assert r.returncode != 0
    assert "nope.jsonl.gz" in r.stderr


def _evaluated_set(out: Path) -> dict:
    return {name: (out / name).read_bytes() for name in ("metrics.json", "points.csv", "report.md", "frontier.png")}


@pytest.mark.parametrize("args, message", [
    (["--policies", ","], "--policies ',': names no policy"),
    (["--policies", "thr", "--bootstrap", "0"], "argument --bootstrap: expected an integer in [1, 100000]"),
    (["--policies", "thr", "--prm-noise", "nan"], "argument --prm-noise: expected a finite number >= 0"),
    (["--policies", "thr", "--checkpoints", "nowhere"], "checkpoint folder nowhere does not exist"),
])
def test_bad_arguments_leave_the_last_report_alone(evaluated, trees_file, args, message):
    out, _ = evaluated
    before = _evaluated_set(out)
    r = _run("--trees", str(trees_file), "--out", str(out), "--quiet", *args, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _evaluated_set(out) == before


def test_the_four_files_change_together_or_not_at_all(evaluated, monkeypatch):
    """A failure while the set is being built (the plot, here) leaves the old set as it was."""
    from trim_rl.evaluation import report

    out, _ = evaluated
    before = _evaluated_set(out)
    result = json.loads((out / "metrics.json").read_text())
    result["trees"] = "changed"

    def broken(where, res):
        raise OSError("disk full")

    monkeypatch.setattr(report, "plot_frontiers", broken)
    with pytest.raises(OSError, match="disk full"):
        report.write_all(out, result)
    assert _evaluated_set(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temporary folder left
