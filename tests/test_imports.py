"""Every module imports alone in a fresh interpreter (no import cycles), and ``import trim_rl`` stays light."""

import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

MODULES = sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                 for p in (REPO / "trim_rl").rglob("*.py") if "resources" not in p.parts)
OPTIONAL = {"trim_rl.live.serve.app", "trim_rl.live.serve.routes"}  # need the [serve] extra (fastapi)
MAIN_ONLY = {"trim_rl.export"}  # runs only as ``python -m``: the name is the API function's
# data <- sim <- envs <- agents <- training, evaluation <- live <- the Python API <- the commands: a module
# imports (at its top or inside a function) only from its own layer or those below
LAYERS = (("trim_rl.fsutil", "trim_rl.netutil", "trim_rl.argtypes", "trim_rl.cli_errors", "trim_rl.configs",
           "trim_rl.resources"),
          ("trim_rl.data",), ("trim_rl.sim",), ("trim_rl.envs", "trim_rl._registration"), ("trim_rl.agents",),
          ("trim_rl.training", "trim_rl.evaluation"), ("trim_rl.live",), ("trim_rl.api",))
COMMANDS = ("trim_rl.cli", "trim_rl.export", "trim_rl.demo", "trim_rl.bench")


def _top_level_imports(path: Path, module: str) -> set[str]:
    """trim_rl modules a module imports at its top level (function-local imports run later, so they
    cannot form an import-time cycle)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m in MODULES and m != module}


def test_no_import_cycle():
    paths = {m: REPO.joinpath(*m.split(".")).with_suffix(".py") for m in MODULES}
    paths = {m: p if p.exists() else REPO.joinpath(*m.split("."), "__init__.py") for m, p in paths.items()}
    graph = {m: _top_level_imports(p, m) for m, p in paths.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(n):], n]))
            if n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [m])


def test_each_module_imports_in_a_fresh_interpreter():
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError as exc:\n"
            "        print(f'{name}: {exc}')\n")
    failures = []
    for i in range(0, len(MODULES), 20):
        r = subprocess.run([sys.executable, "-c", code, *MODULES[i:i + 20]], capture_output=True, text=True,
                           timeout=300, cwd=REPO)
        assert r.returncode == 0, r.stderr[-2000:]
        failures += [line for line in r.stdout.splitlines() if line.split(":")[0] not in OPTIONAL | MAIN_ONLY]
    assert not failures, failures


@pytest.mark.parametrize("module", ["trim_rl.api", "trim_rl.training.recipe", "trim_rl.evaluation.evaluation",
                                    "trim_rl.agents.registry", "trim_rl.live.cli", "trim_rl.data.tree_dp"])
def test_no_cycle_through_the_hubs(module):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]


def test_import_trim_rl_registers_the_env_without_heavy_imports():
    code = ("import sys, trim_rl, gymnasium\n"
            "assert 'trim_rl/Routing-v0' in gymnasium.envs.registry\n"
            "heavy = [m for m in ('torch', 'stable_baselines3', 'sb3_contrib', 'vllm', 'transformers') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def _layer(module: str) -> int | None:
    """The layer of a module (the commands above every other; None: in no layer)."""
    if (module in COMMANDS or module.startswith("trim_rl.cli.")
            or module.rsplit(".", 1)[-1] in ("__main__", "cli", "bench")):
        return len(LAYERS)
    return next((i for i, group in enumerate(LAYERS) for g in group if module == g or module.startswith(g + ".")),
                None)


def test_layering():
    import ast

    unplaced, upward = [], []
    for p in sorted((REPO / "trim_rl").rglob("*.py")):
        if "resources" in p.parts or p == REPO / "trim_rl" / "__init__.py":
            continue
        module = ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        here = _layer(module)
        if here is None:
            unplaced.append(module)
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                there = _layer(name) if name.startswith("trim_rl.") else None
                if there is not None and there > here:
                    upward.append(f"{module} imports {name}")
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    assert not upward, "imports against the layering: " + "; ".join(upward)
