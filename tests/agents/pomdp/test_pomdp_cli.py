"""train.py with the TRIM-POMDP agent, export, evaluate.py --checkpoints, and the PRM perturbations."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from trim_rl.agents.pomdp.policy import load_pomdp
from trim_rl.data.flat import load_flat
from trim_rl.evaluation.perturb import perturb_prm
from trim_rl.evaluation.robustness import DEFAULT_LAMS
from trim_rl.evaluation.sweep import sweep_checkpoints
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

SMALL = ["solver.p_grid:51", "solver.simplex_grid:11"]


def _run(*args, cwd=REPO):
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from trim_rl.sim.generate import generate_file

    d = tmp_path_factory.mktemp("pomdp_trees")
    paths = {}
    for split, limit in (("train", 40), ("val", 8), ("test", 10)):
        paths[split] = str(d / f"{split}.jsonl.gz")
        generate_file("math500", split, 1, paths[split], limit=limit, draws=2)
    env = d / "tiny.yaml"
    env.write_text(yaml.safe_dump({"name": "tiny", **paths, "lam": 1.6e-3, "lam_grid": [8e-4, 3.2e-3]}))
    return {"dir": d, "env": str(env), **paths}


def test_agent_yaml_grid_matches_the_robustness_default():
    agent = yaml.safe_load((REPO / "agents" / "trim_pomdp.yaml").read_text())
    assert agent["algo"] == "pomdp" and agent["obs"] == "agg"
    assert [float(x) for x in agent["lam_grid"]] == list(DEFAULT_LAMS)


def test_train_export_evaluate(tiny, tmp_path):
    out = _run("train.py", "--agent", "agents/trim_pomdp.yaml", "--env", tiny["env"], "--lam-grid", "8e-4", "3.2e-3",
               "--runs", str(tmp_path / "runs"), "--hyperparams", *SMALL)
    runs = [Path(line.split("run: ", 1)[1]) for line in out.splitlines() if line.startswith("run: ")]
    assert len(runs) == 2
    for run, lam in zip(runs, (8e-4, 3.2e-3)):
        assert run.parent.name == "trim_pomdp" and run.name.startswith(f"tiny__{lam:g}__0__")
        for name in ("config.yml", "command.txt", "git_hash.txt", "policy.json", "policy.npz", "validation.json"):
            assert (run / name).exists(), name
        cfg = yaml.safe_load((run / "config.yml").read_text())
        assert cfg["target"]["lam"] == lam and cfg["agent"]["algo"] == "pomdp" and cfg["agent"]["solver"]["p_grid"] == 51
        assert cfg["result"]["lam"] == lam and cfg["result"]["requested_budget"] is None
        meta = json.loads((run / "policy.json").read_text())
        assert meta["kind"] == "pomdp" and meta["lam"] == lam
        _run("-m", "trim_rl.export", str(run), "--out", str(tmp_path / "ck" / f"trim_pomdp_{lam:g}"))
    # the same seed and settings give the same tables
    again = _run("train.py", "--agent", "agents/trim_pomdp.yaml", "--env", tiny["env"], "--lam", "8e-4",
                 "--runs", str(tmp_path / "runs2"), "--hyperparams", *SMALL)
    run2 = Path(again.strip().splitlines()[-1].split("run: ", 1)[1])
    with np.load(runs[0] / "policy.npz", allow_pickle=False) as a, \
            np.load(run2 / "policy.npz", allow_pickle=False) as b:
        assert set(a.files) == set(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    rep = tmp_path / "rep"
    _run("evaluate.py", "--trees", tiny["test"], "--policies", "thr", "--checkpoints", str(tmp_path / "ck"),
         "--out", str(rep), "--bootstrap", "20", "--quiet")
    metrics = json.loads((rep / "metrics.json").read_text())
    fam = metrics["policies"]["TRIM-POMDP"]
    assert [p["setting"] for p in fam["points"]] == [8e-4, 3.2e-3]
    assert fam["points"][0]["cost_pct"] >= fam["points"][1]["cost_pct"]


def test_a_budget_is_met_by_the_price_search(tiny, tmp_path):
    out = _run("train.py", "--agent", "agents/trim_pomdp.yaml", "--env", tiny["env"], "--budget", "15",
               "--runs", str(tmp_path / "runs"), "--no-progress", "--hyperparams", *SMALL)
    run = Path(out.strip().splitlines()[-1].split("run: ", 1)[1])
    assert run.name.startswith("tiny__b15__0__")
    meta = json.loads((run / "policy.json").read_text())
    res = json.loads((run / "result.json").read_text())
    assert meta["budget"]["requested"] == 15.0 and meta["lam"] == res["lam"] > 0
    assert abs(res["calib_cost_pct"] - 15.0) < 5.0  # 16 calibration trees: the nearest spend they allow
    # the table carries its budget, and evaluate.py reports it beside the spend
    assert load_pomdp(run).requested_budget == 15.0
    (point,) = sweep_checkpoints([load_pomdp(run)], load_flat(tiny["test"]))
    assert point.requested_budget == 15.0


def test_prm_perturbations_are_seeded_and_recompute_the_history(bundled_test):
    trees = bundled_test.subset(np.arange(50))
    a = perturb_prm(trees, noise=1.0, flip=0.1, seed=3)
    b = perturb_prm(trees, noise=1.0, flip=0.1, seed=3)
    c = perturb_prm(trees, noise=1.0, flip=0.1, seed=4)
    assert np.array_equal(a.weak_prm, b.weak_prm) and np.array_equal(a.strong_prm, b.strong_prm)
    assert not np.array_equal(a.weak_prm, c.weak_prm)
    assert not np.array_equal(a.weak_prm, trees.weak_prm) and trees.weak_prm is not a.weak_prm
    assert ((a.weak_prm > 0) & (a.weak_prm < 1)).all()
    assert np.all(a.strong_prm[~trees.strong_present] == trees.strong_prm[~trees.strong_present])
    child = np.flatnonzero(a.depth > 0)
    par = a.parent[child]
    score = np.where(a.parent_action[child] == 1, a.strong_prm[par], a.weak_prm[par])
    assert np.allclose(a.in_prm[child], score)
    assert np.allclose(a.prev_min[child], np.minimum(a.prev_min[par], score))
    assert np.allclose(a.prev_prod[child], a.prev_prod[par] * score)
    flips = perturb_prm(trees, flip=1.0)
    assert np.allclose(flips.weak_prm, 1 - trees.weak_prm)
    assert perturb_prm(trees) is trees
    with pytest.raises(ValueError):
        perturb_prm(trees, noise=-1)


def test_evaluate_prm_noise_and_flip_change_results_deterministically(tiny, tmp_path):
    def thr_accuracies(*extra):
        out = tmp_path / "_".join(extra or ("clean",))
        _run("evaluate.py", "--trees", tiny["test"], "--policies", "thr", "--out", str(out), "--bootstrap", "10",
             "--quiet", *extra)
        m = json.loads((out / "metrics.json").read_text())
        return m, [p["accuracy"] for p in m["policies"]["thr"]["points"]]

    clean_m, clean = thr_accuracies()
    noisy_m, noisy = thr_accuracies("--prm-noise", "2", "--prm-flip", "0.2")
    _, noisy_again = thr_accuracies("--prm-noise", "2", "--prm-flip", "0.2", "--seed", "0")
    assert noisy == noisy_again and noisy != clean
    assert noisy_m["prm_noise"] == 2 and noisy_m["prm_flip"] == 0.2 and clean_m["prm_noise"] == 0
    assert "PRM logit noise" in noisy_m["trees"]


def test_bench_pomdp_prints_both_timings(tiny):
    out = _run("-m", "trim_rl.bench", "pomdp", "--trees", tiny["train"], "--lams", "8e-4", "3.2e-3", "--repeats", "1")
    assert "solve one budget" in out and "solve the grid (2 budgets)" in out


@pytest.mark.parametrize("argv, expected", [
    (["--trees", "missing.jsonl"], "--trees: tree file missing.jsonl does not exist"),
    (["--train", "sim:nope:train"], "--train:"),
    (["--regen-prob", "2"], "--regen-prob: expected a number in [0, 1]"),
])
def test_the_calibration_command_refuses_bad_flags_in_one_line(argv, expected, capsys):
    from trim_rl.agents.pomdp.calibration import main

    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse refuses a flag's value itself
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and expected in err and len(err.splitlines()) == 1
    assert err.startswith("python -m trim_rl.agents.pomdp.calibration")
