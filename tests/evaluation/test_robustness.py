"""The robustness sweep (``evaluate.py --robustness``) on a pool of test seeds: intervals over test
problems and each seed's CPT(80%) spread, as a plain pooled evaluation gives them."""

from __future__ import annotations

import json
import math

import pytest

import trim_rl
import trim_rl.cli.evaluate as evaluate_cli
from trim_rl.evaluation import robustness
from trim_rl.evaluation.evaluation import DEFAULT_TREES
from tests.conftest import REPO

POMDP = str(REPO / "checkpoints" / "trim_pomdp")


@pytest.fixture(scope="module")
def seed_files(sim_files):
    return [sim_files("test", seed, limit=12, draws=3) for seed in (5, 6, 7)]


@pytest.fixture(scope="module")
def report(seed_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "rep"
    robustness.robustness_report(seed_files, [POMDP], noise=[0.0, 1.0], flip=[], seed=3, n_boot=40, out=out,
                                 progress=False)
    return out, json.loads((out / "robustness.json").read_text())


def test_the_clean_row_on_a_pool_is_the_pooled_evaluation(seed_files, report):
    """Same figures, same problem-clustered interval and same per-seed CPT(80%) as ``trim_rl.evaluate`` on
    the pool: a bootstrap over single trajectories would give another (narrower) interval."""
    _, data = report
    assert data["pool"]["trees_per_seed"] == [36, 36, 36]
    clean = data["conditions"][0]
    assert (clean["prm_noise"], clean["prm_flip"]) == (0.0, 0.0)
    ev = trim_rl.evaluate(["thr"], seed_files, checkpoints=[POMDP], n_boot=40, seed=3)
    for name, key in (("thr", "TRIM-Thr"), ("TRIM-POMDP", "TRIM-POMDP")):
        want, got = ev.policies[name], clean["policies"][key]
        assert got["cpt"]["80"] == want["cpt"]["80"], name
        assert got["cpt80_interval"] == want["intervals"]["cpt"]["80"], name
        assert got["cpt80_per_seed"] == want["per_seed"]["cpt80"], name
        assert got["cpt80_spread"]["n"] == 3
    ratio = clean["policies"]["TRIM-POMDP"]["cpt80_ratio_to_thr"]
    assert ratio["pooled"] == ev.data["ratios"]["cpt"]["TRIM-POMDP"]["80"]["pooled"]
    assert "cpt80_ratio_to_thr" not in clean["policies"]["TRIM-Thr"]


def test_a_perturbed_row_is_the_pooled_evaluation_of_the_perturbed_pool(seed_files, report):
    """The noise is drawn over the whole pool (as ``evaluate.py --prm-noise`` draws it), then each seed's
    part is scored alone."""
    _, data = report
    noisy = data["conditions"][1]
    assert noisy["prm_noise"] == 1.0
    ev = trim_rl.evaluate(["thr"], seed_files, n_boot=40, seed=3, prm_noise=1.0)
    thr = noisy["policies"]["TRIM-Thr"]
    assert thr["cpt"]["80"] == ev.policies["thr"]["cpt"]["80"]
    assert thr["cpt80_interval"] == ev.policies["thr"]["intervals"]["cpt"]["80"]
    assert thr["cpt80_per_seed"] == ev.policies["thr"]["per_seed"]["cpt80"]
    assert thr["cpt80_per_seed"] != data["conditions"][0]["policies"]["TRIM-Thr"]["cpt80_per_seed"]
    finite = [v for v in thr["cpt80_per_seed"] if v is not None and math.isfinite(v)]
    assert thr["cpt80_spread"]["n_inf"] == 3 - len(finite)


def test_the_report_prints_the_spread_next_to_every_pooled_figure(report):
    out, data = report
    md = (out / "robustness.md").read_text()
    assert "A pool of 3 test seeds (108 trajectories)" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| 0 | 0 |") or ln.startswith("| 1 | 0 |")]
    cpt_rows = [r for r in rows if "%" in r]
    ratio_rows = [r for r in rows if "x [" in r]
    assert len(cpt_rows) == len(ratio_rows) == 2 and len(rows) == 4  # one of each per condition
    for row in cpt_rows:
        assert row.count("per seed") == 2, row  # TRIM-Thr and TRIM-POMDP
    for row in ratio_rows:
        assert row.count("per seed") == 1, row  # TRIM-POMDP / TRIM-Thr
    assert "| PRM noise sigma | PRM flips | TRIM-POMDP |" in md  # the ratio table's header


def test_a_single_seed_has_no_spread(seed_files, tmp_path):
    md = robustness.robustness_report(seed_files[0], [POMDP], noise=[0.0], flip=[], n_boot=5, out=tmp_path / "r",
                                      progress=False)
    text = md.read_text()
    assert "per seed" not in text and "A pool" not in text
    data = json.loads((tmp_path / "r" / "robustness.json").read_text())
    assert "pool" not in data and "cpt80_spread" not in data["conditions"][0]["policies"]["TRIM-Thr"]


def test_the_sweep_defaults_to_the_readme_pool(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(evaluate_cli, "robustness_report", lambda trees, *a, **k: seen.append(trees) or "x")
    monkeypatch.setattr(robustness, "robustness_report", lambda trees, *a, **k: seen.append(trees) or "x")
    assert evaluate_cli.main(["--robustness", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert robustness.main(["--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert robustness.main(["--trees", "sim:math500:test", "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert seen == [DEFAULT_TREES, DEFAULT_TREES, "sim:math500:test"]
