"""Tests for trim_rl.sim.generate and trim_rl.sim.profiles (file contents, determinism, splits)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from trim_rl.data.flat import load_flat
from trim_rl.data.problems import load_problems
from trim_rl.data.schema import MAX_STEPS, SCHEMA
from trim_rl.sim.generate import generate_file, generate_trees
from trim_rl.sim.params import load_params
from trim_rl.sim.profiles import SPLITS, profile_problems


@pytest.fixture(scope="module")
def params():
    return load_params()


@pytest.fixture(scope="module")
def math_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    a, b, c = d / "a.jsonl.gz", d / "b.jsonl.gz", d / "c.jsonl.gz"
    generate_file("math500", "test", 0, a, limit=20)
    generate_file("math500", "test", 0, b, limit=20)
    generate_file("math500", "test", 1, c, limit=20)
    return a, b, c


def _lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_same_seed_same_bytes(math_files):
    a, b, _ = math_files
    assert a.read_bytes() == b.read_bytes()


def test_other_seed_other_bytes(math_files):
    a, _, c = math_files
    assert a.read_bytes() != c.read_bytes()
    ta, tc = _lines(a), _lines(c)
    # a seed redraws solutions, not problems
    assert [t["meta"]["source_problem_id"] for t in ta] == [t["meta"]["source_problem_id"] for t in tc]
    assert [t["nodes"] for t in ta] != [t["nodes"] for t in tc]


def test_plain_jsonl_has_same_content(tmp_path, math_files):
    p = tmp_path / "plain.jsonl"
    generate_file("math500", "test", 0, p, limit=20)
    assert [json.loads(x) for x in p.read_text().splitlines()] == _lines(math_files[0])


@pytest.mark.parametrize("split", SPLITS)
def test_generated_files_validate_and_carry_meta(tmp_path, params, split):
    prof = params.profiles["math500"]
    out = tmp_path / f"{split}.jsonl.gz"
    summary = generate_file("math500", split, 7, out, limit=12, draws=3)
    f = load_flat(out)  # validates every tree
    assert f.n_trees == 12 * 3 == summary["trees"]
    split_ids = {p.problem_id for p in profile_problems(prof, split).problems}
    rows = _lines(out)
    for t in rows:
        assert t["schema"] == SCHEMA
        assert t["split"] == split and t["dataset"] == "math500"
        meta = t["meta"]
        assert meta["seed"] == 7
        assert meta["sim_version"] == params.version
        assert meta["profile"] == "math500"
        assert meta["source_problem_id"] in split_ids
        assert t["problem_id"].startswith(meta["source_problem_id"] + "#")
        assert 0 <= t["max_interventions"] <= prof.max_interventions
        assert len(t["nodes"]) <= prof.max_nodes
        assert 1 <= t["strong_only"]["steps"] <= MAX_STEPS
    assert len({t["problem_id"] for t in rows}) == len(rows)
    assert f.n_nodes_per_tree.max() <= prof.max_nodes
    assert (f.max_interventions <= prof.max_interventions).all()
    assert summary["nodes_max"] == int(f.n_nodes_per_tree.max())
    assert summary["reduced_trees"] == int((f.max_interventions < prof.max_interventions).sum())
    assert (f.depth < MAX_STEPS).all()
    # draws of one problem differ from each other
    assert rows[0]["nodes"] != rows[1]["nodes"]


def test_tree_budget_matches_structure(tmp_path):
    """Every node on a path that used fewer regenerations than the tree's budget offers a strong step."""
    out = tmp_path / "t.jsonl.gz"
    generate_file("math500", "test", 2, out, limit=6, draws=2)
    f = load_flat(out)
    budget = f.max_interventions[f.tree_index]
    np.testing.assert_array_equal(f.regen_child != -2, f.interventions < budget)
    assert f.interventions.max() == f.max_interventions.max() > 0


def test_math500_splits_disjoint_and_cover(params):
    prof = params.profiles["math500"]
    ids = {s: [p.problem_id for p in profile_problems(prof, s).problems] for s in SPLITS}
    for s in SPLITS:
        assert len(ids[s]) == len(set(ids[s])) > 0
    assert not set(ids["train"]) & set(ids["val"])
    assert not set(ids["train"]) & set(ids["test"])
    assert not set(ids["val"]) & set(ids["test"])
    every = {p.problem_id for p in load_problems("math500")}
    assert len(every) == 500
    assert set(ids["train"]) | set(ids["val"]) | set(ids["test"]) == every
    # roughly the profile's fractions
    assert abs(len(ids["test"]) - 500 * prof.test_fraction) <= 5
    assert abs(len(ids["val"]) - 500 * prof.val_fraction) <= 5
    # "all" is their union
    assert len(profile_problems(prof, "all").problems) == 500


def test_bundled_files_follow_the_split(params):
    """The shipped trees use the problems of their split (header of the first few lines only)."""
    from trim_rl.sim.bundled import bundled_path

    prof = params.profiles["math500"]
    for split in SPLITS:
        ids = {p.problem_id for p in profile_problems(prof, split).problems}
        with gzip.open(bundled_path("math500", split), "rt", encoding="utf-8") as fh:
            for _, line in zip(range(3), fh):
                t = json.loads(line)
                assert t["split"] == split and t["meta"]["source_problem_id"] in ids
                assert t["meta"]["seed"] == 0 and t["meta"]["sim_version"] == params.version


def test_unknown_profile_and_split(params):
    with pytest.raises(ValueError):
        generate_trees("no-such-profile", "test", 0, limit=1)
    with pytest.raises(ValueError):
        profile_problems(params.profiles["math500"], "dev")


@pytest.mark.parametrize("profile", ["aime", "olympiadbench", "minerva"])
def test_other_profiles_generate_with_real_problems(tmp_path, params, profile):
    prof = params.profiles[profile]
    out = tmp_path / f"{profile}.jsonl.gz"
    summary = generate_file(profile, "test", 0, out, limit=3, draws=1)
    f = load_flat(out)
    assert f.n_trees == 3 == summary["trees"]
    real = {p.problem_id: p for p in load_problems(prof.benchmark)}
    for t in _lines(out):
        src = real[t["meta"]["source_problem_id"]]
        assert t["problem"] == src.problem and len(t["problem"]) > 20
        assert t["answer"] == src.answer and t["answer"].strip()
        assert t["meta"]["profile"] == profile
        assert t["max_interventions"] <= prof.max_interventions
        assert len(t["nodes"]) <= prof.max_nodes
    assert set(f.dataset) == {prof.benchmark}
    assert set(f.split) == {"test"}
