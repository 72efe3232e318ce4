"""Query-level routers and the paper report's PRM diagnostics, checked against their definitions on
small hand-built tree files."""

import json
import subprocess
import sys

import numpy as np
import pytest

from trim_rl.agents import query as Q
from trim_rl.data.flat import load_flat
from trim_rl.data.trees import write_trees
from trim_rl.evaluation.paper import prm_diagnostics
from trim_rl.evaluation.query_sweep import QueryContext, sweep_query
from tests.conftest import REPO



def chain(pid, prms, correct, strong_tokens, strong_correct, labels=None):
    """A weak-only chain (max_interventions 0) whose last step is final."""
    nodes = []
    for i, p in enumerate(prms):
        last = i == len(prms) - 1
        w = {"tokens": 10 * (i + 1), "prm": p, "final": last}
        if last:
            w["correct"] = correct
        if labels is not None:
            w["step_correct"] = labels[i]
        nodes.append({"weak": w, "keep": None if last else i + 1})
    return {"schema": "trim_rl.tree/v1", "problem_id": pid, "dataset": "toy", "split": "test",
            "problem": f"problem {pid}", "answer": "1", "level": 1, "models": {"weak": "w", "strong": "s", "prm": "p"},
            "max_interventions": 0, "strong_only": {"tokens": strong_tokens, "steps": 2, "correct": strong_correct},
            "nodes": nodes}


@pytest.fixture()
def toy(tmp_path):
    trees = [
        chain("a", [0.9, 0.2], False, 100, True),   # final 0.2, min 0.2
        chain("b", [0.1, 0.95], False, 200, True),  # final 0.95, min 0.1
        chain("c", [0.8, 0.7], True, 300, True),    # final 0.7
        chain("d", [0.6, 0.9], False, 400, False),  # final 0.9
    ]
    path = tmp_path / "toy.jsonl"
    write_trees(path, trees)
    return load_flat(path)


def test_automix_routes_lowest_final_score_first(toy):
    pts, diag = sweep_query("automix", toy, None)
    by_frac = dict(zip([round(0.05 * i, 2) for i in range(21)], pts))
    r = by_frac[0.25].records  # one of four problems re-solved: "a" (final score 0.2)
    assert r.correct.tolist() == [True, False, True, False]
    assert r.strong_tokens.tolist() == [100, 0, 0, 0]
    # the weak model solved every problem first: its tokens always count
    assert r.weak_tokens.tolist() == [30, 30, 30, 30]
    assert r.discarded_weak_tokens.tolist() == [30, 0, 0, 0]
    r = by_frac[0.5].records  # then "c" (final score 0.7)
    assert r.strong_tokens.tolist() == [100, 0, 300, 0]
    assert 0.0 <= diag["test_auc_weak_fails"] <= 1.0


def test_automix_min_uses_the_minimum_step_score(toy):
    pts, _ = sweep_query("automix-min", toy, None)
    r = pts[5].records  # 25%: lowest min score is "b" (0.1)
    assert r.strong_tokens.tolist() == [0, 200, 0, 0]
    assert r.correct.tolist() == [False, True, True, False]


def test_random_query_is_the_expected_line(toy):
    pts, _ = sweep_query("random-query", toy, None)
    weak = np.array([0, 0, 1, 0.0])
    strong = np.array([1, 1, 1, 0.0])
    for p in pts:
        q = p.setting
        np.testing.assert_allclose(p.records.correct, (1 - q) * weak + q * strong)
        np.testing.assert_allclose(p.records.strong_tokens, q * np.array([100, 200, 300, 400]))


def test_smoothie_not_applicable_without_texts(toy):
    pts, diag = sweep_query("smoothie", toy, None)
    assert pts == [] and "not_applicable" in diag


def test_auc_and_quantile_routes():
    assert Q._auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert Q._auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    routes = Q.quantile_routes(np.array([0.3, 0.9, 0.1, 0.5]), [0.0, 0.5, 1.0])
    assert [r.tolist() for _, r in routes] == [[False] * 4, [False, True, False, True], [True] * 4]


def test_prm_diagnostics_by_step(tmp_path):
    trees = [chain("x", [0.9, 0.3, 0.2], False, 10, True, labels=[True, False, False]),
             chain("y", [0.4, 0.8, 0.9], True, 10, True, labels=[True, True, True])]
    path = tmp_path / "lab.jsonl"
    write_trees(path, trees)
    rows = {r["step"]: r for r in prm_diagnostics(load_flat(path), threshold=0.5)}
    # step 1: scores .9 (correct), .4 (correct): flag .4 -> precision 0, recall 0 (no wrong step)
    assert rows["1"]["wrong_rate"] == 0.0 and rows["1"]["precision"] == 0.0
    # step 2: .3 wrong (flagged), .8 correct -> precision 1, recall 1, AUC 1
    assert rows["2"]["precision"] == 1.0 and rows["2"]["recall"] == 1.0 and rows["2"]["roc_auc"] == 1.0


@pytest.fixture(scope="module")
def small_splits(tmp_path_factory):
    from trim_rl.sim.generate import generate_file

    d = tmp_path_factory.mktemp("qsplits")
    out = {}
    for split, limit in (("train", 40), ("val", 15), ("test", 20)):
        out[split] = d / f"{split}.jsonl.gz"
        generate_file("math500", split, 0, out[split], limit=limit, draws=2)
    return {k: load_flat(v) for k, v in out.items()}, out


@pytest.mark.slow
def test_learned_routers_route_whole_problems(small_splits):
    flat, _ = small_splits
    ctx = QueryContext(flat["train"], flat["val"], seed=0)
    test = flat["test"]
    ids = np.array(Q.source_ids(test))
    for name in ("sw", "mf", "clf"):
        pts, diag = sweep_query(name, test, ctx)
        assert len(pts) == 21
        assert diag["params"] in [({**g, "seed": 0} if name == "mf" else g) for g in Q.GRIDS[name]]
        assert -1.0 <= diag["val_auc"] <= 1.0
        for p in pts:
            routed = p.records.strong_tokens > 0
            for pid in set(ids):  # all draws of a problem go the same way
                assert len(set(routed[ids == pid].tolist())) == 1
        # cost grows with the routed fraction and ends at always-strong
        costs = [p.records.strong_tokens.sum() for p in pts]
        assert costs == sorted(costs) and costs[-1] == test.strong_only_tokens.sum()


@pytest.mark.slow
def test_evaluate_cli_with_query_routers(small_splits, tmp_path):
    _, paths = small_splits
    r = subprocess.run([sys.executable, "evaluate.py", "--trees", str(paths["test"]), "--train-trees",
                        str(paths["train"]), "--val-trees", str(paths["val"]), "--policies",
                        "thr,clf,automix,random-query,smoothie", "--bootstrap", "20", "--quiet", "--out",
                        str(tmp_path / "ev")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {"thr", "clf", "automix", "random-query"} <= set(m["policies"])
    assert "smoothie" in m["not_applicable"]
    assert "test_auc_weak_fails" in m["policies"]["clf"]["diagnostics"]
