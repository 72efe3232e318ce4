"""Command-line tests: ``python -m trim_rl.sim`` and ``python -m trim_rl.bench env``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trim_rl.data.flat import load_flat
from trim_rl.sim.generate import generate_file
from tests.conftest import REPO



def _run(*args, timeout=180):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_generate_cli(tmp_path):
    out = tmp_path / "val.jsonl.gz"
    r = _run("-m", "trim_rl.sim", "generate", "--profile", "math500", "--split", "val", "--seed", "3",
             "--limit", "5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    f = load_flat(out)
    assert f.n_trees > 0 and set(f.split) == {"val"}
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["trees"] == f.n_trees and summary["seed"] == 3 and summary["split"] == "val"
    # the CLI writes the same bytes as the library call
    ref = tmp_path / "ref.jsonl.gz"
    generate_file("math500", "val", 3, ref, limit=5)
    assert out.read_bytes() == ref.read_bytes()


def test_generate_cli_needs_out():
    r = _run("-m", "trim_rl.sim", "generate", "--limit", "1")
    assert r.returncode != 0
    assert "--out" in r.stderr


def test_generate_cli_rejects_bad_split(tmp_path):
    r = _run("-m", "trim_rl.sim", "generate", "--split", "dev", "--out", str(tmp_path / "x.jsonl"))
    assert r.returncode != 0
    assert "dev" in r.stderr
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("sub, words", [
    ([], ["calibrate", "generate", "report"]),
    (["generate"], ["--profile", "--split", "--seed", "--out", "--limit", "--draws", "--params", "--bundled"]),
    (["report"], ["--profile", "--seed", "--trees", "--readme", "--plot"]),
    (["calibrate"], ["--params", "--out", "--evals", "--rounds", "--draws", "--check"]),
])
def test_help(sub, words):
    r = _run("-m", "trim_rl.sim", *sub, "--help", timeout=60)
    assert r.returncode == 0, r.stderr
    for w in words:
        assert w in r.stdout, w


def test_no_subcommand_fails():
    r = _run("-m", "trim_rl.sim", timeout=60)
    assert r.returncode != 0


def test_bench_env(tmp_path):
    trees = tmp_path / "bench.jsonl.gz"
    generate_file("math500", "test", 0, trees, limit=10, draws=2)
    r = _run("-m", "trim_rl.bench", "env", "--trees", str(trees), "--envs", "8", "--steps", "50", "--repeats", "1")
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("ratio:"), r.stdout
    assert float(last.split(":", 1)[1]) > 0


def test_bench_help():
    r = _run("-m", "trim_rl.bench", "env", "--help", timeout=60)
    assert r.returncode == 0
    for w in ("--envs", "--steps", "--repeats", "--trees", "--obs"):
        assert w in r.stdout
