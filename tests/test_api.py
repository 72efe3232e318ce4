"""The top-level Python API: ``trim_rl.train``, ``.evaluate`` and ``.export`` stay the API functions
once the modules of the same name (the training package, the two CLI modules) have been imported."""

import subprocess
import sys

CODE = """
import trim_rl
import trim_rl.evaluate, trim_rl.export, trim_rl.train.budget   # binds the package attributes to modules
import trim_rl.train.cli as cli
assert cli.__name__ == "trim_rl.train.cli"
try:
    trim_rl.train("no_such_agent", "math500_quick", budget=10)
except FileNotFoundError as exc:
    assert "no_such_agent.yaml" in str(exc), exc
else:
    raise SystemExit("trim_rl.train accepted an agent that does not exist")
try:
    trim_rl.export("nowhere", "out")
except FileNotFoundError as exc:
    assert "nowhere: not a run folder" in str(exc), exc
else:
    raise SystemExit("trim_rl.export accepted a folder that is no run")
result = trim_rl.evaluate(["thr", "always-weak"], "sim:math500:val", n_boot=10)
assert 0 < result.cpt("thr")["80"] < 100
print("ok")
"""


def test_api_functions_survive_imports_of_modules_of_the_same_name(tmp_path):
    # a fresh interpreter: which modules are already imported is the point of the test
    r = subprocess.run([sys.executable, "-c", CODE], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
