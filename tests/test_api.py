"""The top-level Python API: ``trim_rl.train``, ``.resume``, ``.evaluate`` and ``.export`` are plain functions with
their own signatures, whatever else of the package is imported (no module shares their names)."""

import subprocess
import sys

CODE = """
import inspect, types
import trim_rl
import trim_rl.cli.evaluate, trim_rl.cli.export, trim_rl.cli.train, trim_rl.training.budget, trim_rl.evaluation
for name in ("train", "resume", "evaluate", "export"):
    fn = getattr(trim_rl, name)
    assert isinstance(fn, types.FunctionType), (name, type(fn))
    assert fn.__module__ == "trim_rl.api" and fn.__doc__, name
assert "budget" in inspect.signature(trim_rl.train).parameters
try:
    import trim_rl.export
except ImportError as exc:
    assert "trim_rl.cli.export" in str(exc), exc
else:
    raise SystemExit("import trim_rl.export made the function's name a module")
assert isinstance(trim_rl.export, types.FunctionType)
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


def test_api_functions_are_plain_functions_whatever_is_imported(tmp_path):
    # a fresh interpreter: which modules are already imported is the point of the test
    r = subprocess.run([sys.executable, "-c", CODE], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
