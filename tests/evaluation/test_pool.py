"""Pooled evaluation over several test seeds: pooled figures with intervals over test problems, each
seed's figures and their spread, CPT ratios to TRIM-Thr, and what the report and plot show."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import trim_rl
from trim_rl.data.flat import concat, load_flat
from trim_rl.evaluation.evaluation import evaluate_policies, load_pool, problem_clusters, spread
from trim_rl.evaluation.metrics import policy_metrics
from trim_rl.evaluation.report import _styles, inf_notes, markdown, terminal_table
from trim_rl.evaluation.sweep import short_names
from tests.conftest import REPO

NAMES = ["thr", "always-weak", "always-strong", "oracle-step"]


@pytest.fixture(scope="module")
def seed_files(sim_files):
    return [sim_files("test", seed, limit=10, draws=2) for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def pooled(seed_files):
    return trim_rl.evaluate(NAMES, seed_files, n_boot=30, seed=4).data


def test_a_pool_has_one_group_per_seed_and_pooled_figures_of_all_trees(seed_files, pooled):
    assert pooled["pool"]["seeds"] == [Path(p).name for p in seed_files]
    assert pooled["pool"]["trees_per_seed"] == [20, 20, 20] and pooled["n_problems"] == 60
    assert pooled["pool"]["n_test_problems"] == 10  # every draw of a problem on every seed is one cluster
    # the pooled point figures are those of the joined trees evaluated as one set
    joined = evaluate_policies(concat([load_flat(p) for p in seed_files]), NAMES, n_boot=1, seed=4, progress=False)
    for name in NAMES:
        assert pooled["policies"][name]["cpt"] == joined["policies"][name]["cpt"], name
        assert pooled["policies"][name]["apgr"] == joined["policies"][name]["apgr"], name


def test_per_seed_figures_are_each_seed_evaluated_alone(seed_files, pooled):
    thr = pooled["policies"]["thr"]
    alone = [trim_rl.evaluate(["thr"], p, n_boot=1).policies["thr"] for p in seed_files]
    for key, level in (("cpt50", "50"), ("cpt80", "80"), ("cpt95", "95")):
        assert thr["per_seed"][key] == [a["cpt"][level] for a in alone], key
    assert thr["per_seed"]["apgr"] == [a["apgr"] for a in alone]
    v = np.array(thr["per_seed"]["apgr"])
    sp = thr["spread"]["apgr"]
    assert sp["mean"] == pytest.approx(v.mean()) and sp["sd"] == pytest.approx(v.std(ddof=1))
    assert (sp["min"], sp["max"], sp["n_inf"], sp["n"]) == (v.min(), v.max(), 0, 3)
    c = np.array(thr["per_seed"]["cpt80"])
    assert thr["spread"]["cpt80"]["n_inf"] == int(np.isinf(c).sum())


def test_spread_counts_seeds_that_never_reach_a_level():
    sp = spread([10.0, math.inf, 14.0])
    assert (sp["mean"], sp["min"], sp["max"], sp["n_inf"]) == (12.0, 10.0, math.inf, 1)
    assert spread([math.inf, math.inf])["mean"] == math.inf
    # a ratio undefined on one seed (nan: the reference never got there) and infinite on another
    sp = spread([0.9, math.nan, math.inf, 0.8])
    assert (sp["min"], sp["max"], sp["n_inf"]) == (0.8, math.inf, 1)
    assert sp["mean"] == pytest.approx(0.85)


def test_ratios_to_trim_thr_pair_the_same_resamples(pooled):
    r = pooled["ratios"]
    assert r["reference"] == "thr" and "thr" not in r["cpt"] and "always-strong" not in r["cpt"]
    e = r["cpt"]["oracle-step"]["50"]
    pol = pooled["policies"]
    assert math.isfinite(pol["thr"]["cpt"]["50"]) and np.isfinite(pol["thr"]["per_seed"]["cpt50"]).all()
    assert e["pooled"] == pytest.approx(pol["oracle-step"]["cpt"]["50"] / pol["thr"]["cpt"]["50"])
    assert e["per_seed"] == pytest.approx(np.array(pol["oracle-step"]["per_seed"]["cpt50"])
                                          / np.array(pol["thr"]["per_seed"]["cpt50"]))
    assert e["interval"][0] <= e["pooled"] <= e["interval"][1] < 1  # the oracle is far cheaper


def test_the_same_seed_gives_the_same_numbers(seed_files, pooled):
    again = trim_rl.evaluate(NAMES, seed_files, n_boot=30, seed=4).data

    def numbers(d):
        return json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "seconds"} if k in d.get("policies", {}) else v
                           for k, v in d["policies"].items()} | {"ratios": d["ratios"]}, sort_keys=True, default=str)

    assert numbers(again) == numbers(pooled)


def test_a_cluster_bootstrap_resamples_problems_not_trees():
    """Three copies of every tree, clustered by tree, give the intervals of the trees alone; as
    independent trees the copies would give narrower ones."""
    rng = np.random.default_rng(0)
    n, k = 40, 3
    correct = rng.random((4, n)) < np.linspace(0.3, 0.8, 4)[:, None]
    strong = rng.integers(0, 50, (4, n)) * np.arange(4)[:, None]
    wc, sc, so = rng.random(n) < 0.3, rng.random(n) < 0.8, rng.integers(100, 200, n)
    args = dict(n_boot=200, seed=1)
    base = policy_metrics(correct, strong, wc, sc, so, [0, 1, 2, 3], **args)
    tiled = [np.tile(a, k) for a in (correct, strong)] + [np.tile(a, k) for a in (wc, sc, so)]
    clustered = policy_metrics(*tiled, [0, 1, 2, 3], clusters=np.tile(np.arange(n), k), **args)
    assert clustered["intervals"]["apgr"] == pytest.approx(base["intervals"]["apgr"])
    assert np.allclose(clustered["intervals"]["accuracy"], base["intervals"]["accuracy"])
    trees = policy_metrics(*tiled, [0, 1, 2, 3], **args)
    width = lambda m: m["intervals"]["apgr"][1] - m["intervals"]["apgr"][0]  # noqa: E731
    assert width(trees) < 0.8 * width(clustered)
    # one cluster per tree is the tree bootstrap itself
    same = policy_metrics(correct, strong, wc, sc, so, [0, 1, 2, 3], clusters=np.arange(n), **args)
    assert same["intervals"] == base["intervals"]


def test_problem_clusters_join_the_draws_of_a_problem(seed_files):
    f = concat([load_flat(p) for p in seed_files[:2]])
    c = problem_clusters(f)
    base = [pid.rsplit("#", 1)[0] for pid in f.problem_id]
    assert all((c[i] == c[j]) == (base[i] == base[j]) for i in range(0, f.n_trees, 7) for j in range(0, f.n_trees, 5))


def test_a_sim_spec_of_several_seeds_is_one_group_per_seed():
    _, groups = load_pool("sim:math500:val")  # bundled: nothing generated
    assert groups == [("math500:val:0", groups[0][1])]


def test_the_report_and_terminal_show_the_spread_beside_every_pooled_figure(pooled):
    md = markdown(pooled)
    assert "CPT(80%) per seed |" in md and "Per-seed spread" in md and "/ TRIM-Thr" in md
    thr = pooled["policies"]["thr"]["spread"]["cpt80"]
    assert f"{thr['mean']:.1f}% ± {thr['sd']:.1f}" in md
    text = terminal_table(pooled)
    assert "pooled over 3 test seeds" in text and "CPT(80%) / TRIM-Thr's:" in text
    assert f"{thr['mean']:.1f}% ± {thr['sd']:.1f}" in text


def test_an_inf_cpt_is_explained_where_it_is_printed(pooled):
    result = json.loads(json.dumps(pooled, default=float))
    ck = dict(result["policies"]["thr"])
    # one checkpoint at a low budget: its frontier ends before 80% of the gap
    ck.update(label="TRIM-Agg", cpt={"50": 10.0, "80": math.inf, "95": math.inf},
              points=[{"setting": 1e-3, "accuracy": result["references"]["acc_weak"] + 0.01, "cost_pct": 4.0,
                       "strong_tokens": 1.0, "requested_budget": 4.0}],
              frontier={"cost_pct": [0.0, 4.0], "accuracy": [result["references"]["acc_weak"],
                                                            result["references"]["acc_weak"] + 0.01]})
    result["policies"] = {"TRIM-Agg": ck}
    (note,) = inf_notes(result)
    assert "TRIM-Agg: CPT(80/95%) inf = never reached" in note and "at 4.0% cost" in note and "larger budgets" in note
    assert note in terminal_table(result) and note in markdown(result)


def test_every_policy_of_the_results_has_its_own_colour():
    names = ["thr", "always-weak", "always-strong", "random", "oracle-step", "oracle-query", "clf", "automix",
             "TRIM-Agg", "TRIM-Seq", "TRIM-Agg (budget-conditioned)", "TRIM-POMDP", "TRIM-Agg [demo/checkpoints]"]
    styles = _styles({"policies": {n: {} for n in names}})
    colours = [c for c, _ in styles.values()]
    assert len(set(colours)) == len(names), styles
    assert styles["always-strong"][1] is None and styles["always-weak"][1] is None  # points, not lines
    assert styles["oracle-step"][1] == ":" and styles["clf"][1] == "--" and styles["TRIM-Agg"][1] == "-"


def test_checkpoint_folders_are_named_by_short_tails():
    assert short_names(["/w/reports/demo/checkpoints", "/w/checkpoints/trim_agg"]) == {
        "/w/reports/demo/checkpoints": "demo/checkpoints", "/w/checkpoints/trim_agg": "checkpoints/trim_agg"}
    assert short_names(["/a/x/ck", "/b/x/ck"]) == {"/a/x/ck": "a/x/ck", "/b/x/ck": "b/x/ck"}


@pytest.mark.slow
def test_evaluate_cli_pools_files_and_prints_the_table(seed_files, tmp_path):
    out = tmp_path / "rep"
    r = subprocess.run([sys.executable, "evaluate.py", "--trees", *seed_files[:2], "--policies", "thr,oracle-step",
                        "--out", str(out), "--bootstrap", "10"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["pool"]["seeds"] == [Path(p).name for p in seed_files[:2]]
    # paths first, then the result: the terminal ends with the table
    assert r.stdout.index("report: ") < r.stdout.index("pooled over 2 test seeds")
    assert "CPT(80%) / TRIM-Thr's:" in r.stdout and (out / "frontier.png").stat().st_size > 0


def test_demo_and_evaluate_refuse_a_bad_pool_before_any_work(tmp_path, monkeypatch, capsys):
    import trim_rl.cli.evaluate as evaluate_cli
    from trim_rl.cli import demo
    from trim_rl.sim import bundled

    def forbidden(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(bundled, "generate_file", forbidden)
    monkeypatch.setattr("trim_rl.api.evaluate_policies", forbidden)
    monkeypatch.setattr("trim_rl.api.train", forbidden)
    for main in (demo.main, evaluate_cli.main):
        rc = main(["--out", str(tmp_path / "o"), "--trees", "sim:math500:test", "sim:math500:test:3,3"])
        err = capsys.readouterr().err
        assert rc == 2 and "--trees" in err and "twice" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_ratio_to_a_reference_that_never_reaches_the_level_is_undefined():
    from trim_rl.evaluation.evaluation import finite_ratio

    r = finite_ratio([10.0, math.inf, 10.0, math.inf], [20.0, 20.0, math.inf, math.inf])
    assert r[0] == 0.5 and r[1] == math.inf and math.isnan(r[2]) and math.isnan(r[3])
    sp = spread(r)
    assert (sp["mean"], sp["n_inf"]) == (0.5, 1)  # never 0 for a seed where TRIM-Thr never reaches it


def test_the_api_gives_the_spread_and_ratios_of_a_pool_only(seed_files, pooled):
    from trim_rl.api import Evaluation

    pool = Evaluation(pooled)
    assert pool.spread("thr")["apgr"]["n"] == 3
    assert pool.ratio("oracle-step", "50") == pooled["ratios"]["cpt"]["oracle-step"]["50"]
    single = trim_rl.evaluate(["thr"], seed_files[0], n_boot=1)
    with pytest.raises(ValueError, match="spread: the evaluation holds one seed"):
        single.spread("thr")
    with pytest.raises(ValueError, match="ratio: no ratio for 'TRIM-Agg'"):
        pool.ratio("TRIM-Agg")


def test_the_demo_generates_all_its_trees_under_one_bar_before_training(tmp_path, monkeypatch):
    from trim_rl.cli import demo

    calls = []

    class Stop(Exception):
        pass

    def train(*a, **k):
        calls.append("train")
        raise Stop

    monkeypatch.setattr(demo, "resolve_tree_spec", lambda specs, progress=False: calls.append((specs, progress)))
    monkeypatch.setattr("trim_rl.api.train", train)
    with pytest.raises(Stop):
        demo._main(demo.build_parser().parse_args(["--out", str(tmp_path / "d"), "--env", "math500"]))
    assert calls == [(["sim:math500:test:0-2", "sim:math500:train:0-11", "sim:math500:val", "sim:math500:val:0-3"],
                      True), "train"]
