"""train.py ends with the result, not only the run folders: per run the budget, the price, the spend
on the calibration and validation trees and the validation accuracy."""

from __future__ import annotations

import json

from trim_rl.cli import train as cli
from trim_rl.training.summary import summary_table


def _run(tmp_path, name, result):
    d = tmp_path / name
    d.mkdir()
    (d / "result.json").write_text(json.dumps(result))
    return d


def test_the_table_holds_each_runs_figures(tmp_path):
    a = _run(tmp_path, "math500__b15__0__x", {"requested_budget": 15.0, "lam": 0.00123456, "calib_cost_pct": 15.04,
                                              "val_cost_pct": 14.61, "val_accuracy": 0.5712})
    b = _run(tmp_path, "math500__0.0016__0__y", {"requested_budget": None, "lam": 0.0016, "val_cost_pct": 17.0,
                                                 "val_accuracy": 0.6})
    text = summary_table([a, b, tmp_path / "missing"])
    lines = text.strip().splitlines()
    assert lines[1].split()[:2] == ["budget", "price"]
    assert lines[2].split() == ["15%", "0.00123", "15.0%", "14.6%", "57.1%", a.name]
    assert lines[3].split() == ["-", "0.0016", "-", "17.0%", "60.0%", b.name]
    assert summary_table([tmp_path / "missing"]) == ""


def test_train_cli_prints_it_after_the_run_lines(tmp_path, monkeypatch, capsys):
    d = _run(tmp_path, "math500_quick__b15__0__z", {"requested_budget": 15.0, "lam": 0.002, "calib_cost_pct": 15.2,
                                                    "val_cost_pct": 15.2, "val_accuracy": 0.55})
    monkeypatch.setattr("trim_rl.api.check_inputs", lambda *a, **k: None)
    monkeypatch.setattr("trim_rl.api.train_one", lambda *a, **k: d)
    assert cli.main(["--env", "math500_quick", "--budget", "15", "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"run: {d}"  # stdout stays what scripts read
    assert "15%" in err and "0.002" in err and "55.0%" in err and d.name in err
