"""The code passes the project's ruff configuration (pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow



def test_ruff_passes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    r = subprocess.run([ruff, "check", "trim_rl", "tests", "train.py", "evaluate.py", "setup.py"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
