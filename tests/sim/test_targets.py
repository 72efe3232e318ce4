"""The simulator's calibration targets, on newly generated math500 test trees (not the bundled seed).

Foundation targets (end points) and the simulator-fidelity targets (every row of the real TRIM-Thr
sweep): mean accuracy gap over the routed rows <= 3 points and none above 5, strong tokens and
strong calls within 20%, kept weak tokens within 15%.
"""

import numpy as np
import pytest

from trim_rl.data.flat import load_flat
from trim_rl.sim.calibrate import THRESHOLDS, load_targets
from trim_rl.sim.generate import generate_file
from trim_rl.evaluation.sim_report import sweep_rows

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

SEED = 11


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("targets") / "math500_test_seed11.jsonl.gz"
    generate_file("math500", "test", SEED, out)
    trees = load_flat(out)
    return trees, sweep_rows(trees)


def test_end_points(sim):
    trees, rows = sim
    weak = trees.weak_only()
    assert abs(100 * weak["correct"].mean() - 36.4) <= 2.0
    assert abs(100 * trees.strong_only_correct.mean() - 73.0) <= 2.0
    assert abs(weak["weak_tokens"].mean() / 401 - 1) <= 0.10
    assert abs(trees.strong_only_tokens.mean() / 495 - 1) <= 0.10
    assert abs(trees.strong_only_steps.mean() - 8) <= 1.0


def test_threshold_sweep_rows(sim):
    _, rows = sim
    real = load_targets()["rows"]
    gaps = []
    for k in THRESHOLDS:
        s, r = rows[k], real[k]
        gaps.append(abs(s["accuracy"] - r["accuracy"]) * 100)
        assert abs(s["strong_tokens"] / r["strong_tokens"] - 1) <= 0.20, k
        assert abs(s["strong_calls"] / r["strong_calls"] - 1) <= 0.20, k
        assert abs(s["kept_weak_tokens"] / r["kept_weak_tokens"] - 1) <= 0.15, k
        assert abs(s["discarded_weak_tokens"] / r["discarded_weak_tokens"] - 1) <= 0.20, k
    assert np.mean(gaps) <= 3.0, gaps
    assert max(gaps) <= 5.0, gaps


def test_hybrid_never_far_above_strong_only(sim):
    """The real hybrid never exceeds strong-only accuracy (the issue's observation)."""
    trees, rows = sim
    top = max(rows[k]["accuracy"] for k in THRESHOLDS)
    assert top <= trees.strong_only_correct.mean() + 0.02
