"""Shared test helpers (rootdir conftest; no ``__init__.py`` files needed)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest

#: the repository's root folder
REPO = Path(__file__).resolve().parents[1]

# A valid tiny ``trim_rl.tree/v1`` tree with max_interventions = 1:
#
#   node 0 (depth 0, 0 regens)  weak  10 tok prm .9  -> keep 1
#                               strong 20 tok prm .8 -> regenerate 2
#   node 1 (depth 1, 0 regens)  weak   5 tok prm .5  final, incorrect (keep null)
#                               strong  7 tok prm .6 final, correct   (regenerate null)
#   node 2 (depth 1, 1 regen)   weak  11 tok prm .7  -> keep 3; regenerate absent (budget used)
#   node 3 (depth 2, 1 regen)   weak   4 tok prm .95 final, correct; regenerate absent
_TINY_TREE = {
    "schema": "trim_rl.tree/v1",
    "problem_id": "toy/test/0",
    "dataset": "toy",
    "split": "test",
    "problem": "What is 1 + 1?",
    "answer": "2",
    "level": 2,
    "models": {"weak": "weak-model", "strong": "strong-model", "prm": "prm-model"},
    "max_interventions": 1,
    "strong_only": {"tokens": 27, "steps": 2, "correct": True},
    "nodes": [
        {
            "weak": {"tokens": 10, "prm": 0.9, "final": False, "text": "1 + 1"},
            "strong": {"tokens": 20, "prm": 0.8, "final": False, "step_correct": True},
            "keep": 1,
            "regenerate": 2,
        },
        {
            "weak": {"tokens": 5, "prm": 0.5, "final": True, "correct": False, "step_correct": False},
            "strong": {"tokens": 7, "prm": 0.6, "final": True, "correct": True},
            "keep": None,
            "regenerate": None,
        },
        {
            "weak": {"tokens": 11, "prm": 0.7, "final": False},
            "keep": 3,
        },
        {
            "weak": {"tokens": 4, "prm": 0.95, "final": True, "correct": True},
            "keep": None,
        },
    ],
}


def tiny_tree(**header_overrides) -> dict:
    """A fresh deep copy of the tiny valid tree, with optional top-level fields replaced."""
    tree = copy.deepcopy(_TINY_TREE)
    tree.update(copy.deepcopy(header_overrides))
    return tree


def chain_tree(n_steps: int, final_last: bool = True, correct: bool = True) -> dict:
    """A weak-only chain of ``n_steps`` nodes (max_interventions=0, so no regenerate anywhere).
    Step ``i`` has ``3 + i`` tokens and PRM score 0.5; the last step is final (with ``correct``)
    unless ``final_last`` is false (allowed only at the depth limit)."""
    nodes = []
    for i in range(n_steps):
        last = i == n_steps - 1
        weak = {"tokens": 3 + i, "prm": 0.5, "final": bool(last and final_last)}
        if last and final_last:
            weak["correct"] = correct
        nodes.append({"weak": weak, "keep": None if last else i + 1})
    return {
        "schema": "trim_rl.tree/v1", "problem_id": f"chain/{n_steps}", "dataset": "chain", "split": "test",
        "problem": "p", "answer": "a", "models": {"weak": "w", "strong": "s", "prm": "r"},
        "max_interventions": 0, "strong_only": {"tokens": 9, "steps": 1, "correct": False},
        "nodes": nodes,
    }


def write_lines(path: Path, rows) -> Path:
    """Write ``rows`` (dicts are JSON-encoded, strings written verbatim) one per line; gzip when
    the name ends in ``.gz``."""
    path = Path(path)
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    data = text.encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def check_tree_error(exc, path, line: int, field: str) -> None:
    """Assert that a TreeFormatError names ``path``, ``line`` and ``field`` (attributes and message)."""
    msg = str(exc)
    assert exc.path == str(path), msg
    assert exc.line == line, msg
    assert exc.field == field, msg
    assert msg.startswith(f"{path}:{line}: {field}: "), msg
    assert exc.message and exc.message in msg


@pytest.fixture
def make_tree():
    """Factory for the tiny valid tree (a fresh copy each call; keyword args replace header fields)."""
    return tiny_tree


@pytest.fixture
def make_chain():
    """Factory for a weak-only chain tree: ``make_chain(n_steps, final_last=True, correct=True)``."""
    return chain_tree


@pytest.fixture
def write_jsonl():
    """``write_jsonl(path, rows)``: write a JSON Lines file (gzip for ``.gz``), return the path."""
    return write_lines


@pytest.fixture
def assert_tree_error():
    """``assert_tree_error(exc, path, line, field)``: check a TreeFormatError's location."""
    return check_tree_error




def run_command(capsys, main, *argv) -> tuple[int, str]:
    """A command's ``main(argv)`` run in-process: (exit code, stderr), argparse's usage exits included."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code
    return rc, capsys.readouterr().err


def refused_in_one_line(rc: int, err: str, *words: str) -> None:
    """A user error as every command reports it: exit 2, one line, no traceback, naming ``words``."""
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture(scope="session")
def sim_files(tmp_path_factory):
    """Small simulated tree files, drawn once per session for each (split, seed, limit, draws):
    ``sim_files("test", 4, limit=10, draws=3)`` is the path of ``math500_test_seed4.jsonl.gz``.
    Shared: a test must not change them."""
    from trim_rl.sim.generate import generate_file

    made = {}

    def make(split: str, seed: int, limit: int, draws: int, profile: str = "math500") -> str:
        key = (profile, split, seed, limit, draws)
        if key not in made:
            path = tmp_path_factory.mktemp(f"sim_{split}_{seed}") / f"{profile}_{split}_seed{seed}.jsonl.gz"
            generate_file(profile, split, seed, path, limit=limit, draws=draws)
            made[key] = str(path)
        return made[key]

    return make


@pytest.fixture(scope="session")
def sim_flat(sim_files):
    """Small simulated trees as flat arrays, drawn once per session for each (split, seed, limit, draws):
    ``sim_flat("test", 4, limit=10, draws=3)``.  Shared: a test must not change them."""
    from trim_rl.data.flat import load_flat

    made = {}

    def make(split: str, seed: int, limit: int, draws: int, profile: str = "math500"):
        key = (profile, split, seed, limit, draws)
        if key not in made:
            made[key] = load_flat(sim_files(split, seed, limit, draws, profile))
        return made[key]

    return make
