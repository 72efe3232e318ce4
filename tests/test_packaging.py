"""A built wheel carries every data file the package reads at run time (a non-editable install
has no checkout to fall back on)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_package_data(tmp_path):
    pytest.importorskip("setuptools")  # the build backend, installed with the package's dependencies
    # build from a copy, so that setuptools' build/ folder is not left in the checkout
    src = tmp_path / "src"
    shutil.copytree(ROOT / "trim_rl", src / "trim_rl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "--quiet", "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # setuptools names data folders it would not package ("Package ... is absent from the packages
    # configuration"); every folder under trim_rl/ must be a declared package
    assert "absent from the `packages` configuration" not in r.stderr, r.stderr[-3000:]
    (wheel,) = tmp_path.glob("trim_rl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    resources = ROOT / "trim_rl" / "resources"
    expected = {p.relative_to(ROOT).as_posix() for p in resources.rglob("*")
                if p.is_file() and p.suffix in (".json", ".gz")}
    assert {"trim_rl/resources/sim_params.json", "trim_rl/resources/trees/math500_train.jsonl.gz",
            "trim_rl/resources/benchmarks/math500_test.jsonl.gz"} <= expected
    assert expected <= names, sorted(expected - names)
    assert not any(n.startswith("tests/") for n in names)
