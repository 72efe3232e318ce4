"""The README's main job (``make demo`` runs ``python -m trim_rl.demo``), with a tiny training budget."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_trains_exports_and_evaluates(tmp_path):
    r = subprocess.run([sys.executable, "-m", "trim_rl.demo", "--out", str(tmp_path / "demo"), "--timesteps", "2048",
                        "--bootstrap", "50"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"report: {tmp_path / 'demo' / 'report.md'}" in r.stdout
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    cks = sorted(p.name for p in (tmp_path / "demo" / "checkpoints").iterdir())
    assert len(cks) == 5 and all((tmp_path / "demo" / "checkpoints" / c / "model.safetensors").exists() for c in cks)
    fams = [k for k in m["policies"] if k.startswith("TRIM-Agg")]
    assert fams and any(len(m["policies"][f]["points"]) == 5 for f in fams)
    assert {"thr", "oracle-step", "oracle-query"} <= set(m["policies"])
