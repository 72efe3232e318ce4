"""The README's main job (``make demo`` runs ``python -m trim_rl.demo``), with a tiny training budget."""

import json
import subprocess
import sys

from trim_rl.sim.generate import generate_file
import pytest
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow



def test_demo_trains_exports_and_evaluates(tmp_path):
    # a pool of two small test files (the default pool is three full test seeds)
    pool = []
    for seed in (1, 2):
        pool.append(tmp_path / f"test{seed}.jsonl.gz")
        generate_file("math500", "test", seed, pool[-1], limit=40, draws=2)
    r = subprocess.run([sys.executable, "-m", "trim_rl.demo", "--out", str(tmp_path / "demo"), "--env", "math500_quick",
                        "--trees", *map(str, pool),
                        "--budgets", "5", "20", "--bootstrap", "50", "--hyperparams", "policy_iteration.rounds:2",
                        "policy_iteration.samples:20000", "total_timesteps:8192", "eval_freq:4096"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"report: {tmp_path / 'demo' / 'report.md'}" in r.stdout
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    cks = sorted(p.name for p in (tmp_path / "demo" / "checkpoints").iterdir())
    assert cks == ["b20", "b5"] and all((tmp_path / "demo" / "checkpoints" / c / "model.safetensors").exists()
                                         for c in cks)
    # the freshly trained family is its own frontier next to the shipped one, with its budgets
    fam = [k for k, v in m["policies"].items() if k.startswith("TRIM-Agg") and "budget-conditioned" not in k
           and sorted(p.get("requested_budget", 0) for p in v["points"]) == [5.0, 20.0]]
    assert len(fam) == 1, list(m["policies"])
    assert {"thr", "oracle-step", "oracle-query"} <= set(m["policies"])
    assert "| requested budget | spent | spent per seed [min, max] |" in (tmp_path / "demo" / "report.md").read_text()
    # the demo ends with its result in the terminal: the report's main table on the pool, per-seed spread
    # beside every pooled figure, the ratios to TRIM-Thr, and the freshly trained family by a short label
    assert m["pool"]["seeds"] == ["test1.jsonl.gz", "test2.jsonl.gz"]
    tail = r.stdout[r.stdout.index(f"report: {tmp_path / 'demo' / 'report.md'}"):]
    assert "pooled over 2 test seeds" in tail and "CPT(80%) per seed" in tail and "CPT(80%) / TRIM-Thr's:" in tail
    assert "TRIM-Agg [demo/checkpoints]" in tail and str(tmp_path) not in tail.split("\n", 2)[2]
