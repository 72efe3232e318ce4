"""A built wheel carries every data file the package reads at run time (a non-editable install
has no checkout to fall back on)."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow



def test_wheel_carries_the_package_data(tmp_path):
    pytest.importorskip("setuptools")  # the build backend, installed with the package's dependencies
    # build from a copy, so that setuptools' build/ folder is not left in the checkout
    src = tmp_path / "src"
    shutil.copytree(REPO / "trim_rl", src / "trim_rl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("agents", "envs", "checkpoints"):
        shutil.copytree(REPO / name, src / name)
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "--quiet", "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # setuptools names data folders it would not package ("Package ... is absent from the packages
    # configuration"); every folder under trim_rl/ must be a declared package
    assert "absent from the `packages` configuration" not in r.stderr, r.stderr[-3000:]
    (wheel,) = tmp_path.glob("trim_rl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    resources = REPO / "trim_rl" / "resources"
    expected = {p.relative_to(REPO).as_posix() for p in resources.rglob("*")
                if p.is_file() and p.suffix in (".json", ".gz")}
    assert {"trim_rl/resources/sim_params.json", "trim_rl/resources/trees/math500_train.jsonl.gz",
            "trim_rl/resources/benchmarks/math500_test.jsonl.gz"} <= expected
    assert expected <= names, sorted(expected - names)
    assert not any(n.startswith("tests/") for n in names)
    # the project's config folders travel inside the package
    for folder in ("agents", "envs", "checkpoints"):
        want = {f"trim_rl/resources/{p.relative_to(REPO).as_posix()}" for p in (REPO / folder).rglob("*") if p.is_file()}
        assert want and want <= names, sorted(want - names)[:5]
    assert "trim_rl/resources/agents/trim_agg.yaml" in names and "trim_rl/resources/envs/math500.yaml" in names
    # installed (unpacked) outside the checkout, the package finds them by name and trains and evaluates
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "TRIM_RL_CACHE": str(tmp_path / "cache")}
    cli = [sys.executable, "-m", "trim_rl.cli"]
    r = subprocess.run([*cli, "train", "--env", "math500_quick", "--budget", "10", "--no-progress", "--hyperparams",
                        "policy_iteration.rounds:1", "policy_iteration.samples:5000", "total_timesteps:4096",
                        "eval_freq:4096"], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run = work / r.stdout.strip().split("run: ", 1)[1]  # printed as given: relative to where it ran
    assert run.resolve().is_relative_to(work.resolve()) and (run / "policy" / "policy.json").exists()
    where = subprocess.run([sys.executable, "-c", "import trim_rl; print(trim_rl.__file__)"], env=env, cwd=work,
                           capture_output=True, text=True).stdout
    assert where.startswith(str(site)), where  # the unpacked wheel, not the checkout
    r = subprocess.run([*cli, "evaluate", "--policies", "thr,always-weak", "--checkpoints", str(run / "policy"),
                        "--bootstrap", "20", "--quiet", "--out", "rep"], cwd=work, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (work / "rep" / "report.md").exists()
