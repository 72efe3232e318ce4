"""Tests for trim_rl.data.flat: flattening tree files into numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

from trim_rl.data import MAX_STEPS, FlatTrees, TreeFormatError, load_flat, write_trees
from trim_rl.data.flat import ABSENT, flatten
from trim_rl.data.schema import validate_tree
from trim_rl.resources import resource_path

NAN = np.nan
PER_TREE = ("tree_root", "n_nodes_per_tree", "max_interventions", "strong_only_tokens", "strong_only_steps",
            "strong_only_correct", "level")
PER_NODE = ("tree_index", "depth", "interventions", "parent", "parent_action", "weak_tokens", "weak_prm",
            "weak_final", "weak_correct", "weak_step_correct", "strong_present", "strong_tokens", "strong_prm",
            "strong_final", "strong_correct", "strong_step_correct", "keep_child", "regen_child", "prev_min",
            "prev_prod", "in_prm", "in_tokens")


@pytest.fixture
def three_trees(make_tree, make_chain):
    """tiny tree (4 nodes), a 3-step correct weak chain, a 30-step chain truncated at the depth limit."""
    chain3 = make_chain(3, correct=True)
    chain3["level"] = None
    return [make_tree(), chain3, make_chain(MAX_STEPS, final_last=False)]


@pytest.fixture
def flat(tmp_path, three_trees):
    path = tmp_path / "trees.jsonl.gz"
    write_trees(path, three_trees)
    return load_flat(path)


def test_shapes(flat):
    assert isinstance(flat, FlatTrees)
    assert flat.n_trees == 3
    assert flat.n_nodes == 4 + 3 + MAX_STEPS
    for name in PER_TREE:
        assert getattr(flat, name).shape == (3,), name
    for name in PER_NODE:
        assert getattr(flat, name).shape == (flat.n_nodes,), name
    for name in ("problem_id", "dataset", "split", "problem", "answer", "headers"):
        assert len(getattr(flat, name)) == 3, name


def test_per_tree_fields(flat, tmp_path):
    np.testing.assert_array_equal(flat.tree_root, [0, 4, 7])
    np.testing.assert_array_equal(flat.n_nodes_per_tree, [4, 3, MAX_STEPS])
    np.testing.assert_array_equal(flat.max_interventions, [1, 0, 0])
    np.testing.assert_array_equal(flat.strong_only_tokens, [27, 9, 9])
    np.testing.assert_array_equal(flat.strong_only_steps, [2, 1, 1])
    np.testing.assert_array_equal(flat.strong_only_correct, [True, False, False])
    np.testing.assert_array_equal(flat.level, [2.0, NAN, NAN])
    assert flat.problem_id == ["toy/test/0", "chain/3", f"chain/{MAX_STEPS}"]
    assert flat.dataset == ["toy", "chain", "chain"]
    assert flat.split == ["test"] * 3
    assert flat.problem == ["What is 1 + 1?", "p", "p"]
    assert flat.answer == ["2", "a", "a"]
    assert flat.sources == [str(tmp_path / "trees.jsonl.gz")]
    assert flat.headers[0]["problem_id"] == "toy/test/0"
    assert flat.headers[0]["strong_only"] == {"tokens": 27, "steps": 2, "correct": True}
    assert "problem" not in flat.headers[0]


def test_child_pointers_are_global(flat):
    chain30_keep = list(range(8, 7 + MAX_STEPS)) + [-1]
    np.testing.assert_array_equal(flat.keep_child, [1, -1, 3, -1] + [5, 6, -1] + chain30_keep)
    np.testing.assert_array_equal(flat.regen_child, [2, -1, ABSENT, ABSENT] + [ABSENT] * (3 + MAX_STEPS))
    assert ABSENT == -2
    np.testing.assert_array_equal(flat.regen_allowed[:7], [True, True, False, False, False, False, False])
    np.testing.assert_array_equal(flat.tree_index, [0] * 4 + [1] * 3 + [2] * MAX_STEPS)


def test_depth_interventions_parents(flat):
    np.testing.assert_array_equal(flat.depth, [0, 1, 1, 2] + [0, 1, 2] + list(range(MAX_STEPS)))
    np.testing.assert_array_equal(flat.interventions, [0, 0, 1, 1] + [0] * (3 + MAX_STEPS))
    np.testing.assert_array_equal(flat.parent[:7], [-1, 0, 0, 2, -1, 4, 5])
    np.testing.assert_array_equal(flat.parent[7:], [-1] + list(range(7, 7 + MAX_STEPS - 1)))
    np.testing.assert_array_equal(flat.parent_action[:7], [-1, 0, 1, 0, -1, 0, 0])


def test_step_features(flat):
    np.testing.assert_array_equal(flat.weak_tokens[:7], [10, 5, 11, 4, 3, 4, 5])
    np.testing.assert_allclose(flat.weak_prm[:7], [0.9, 0.5, 0.7, 0.95, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(flat.weak_final[:7], [False, True, False, True, False, False, True])
    np.testing.assert_array_equal(flat.weak_correct[:7], [-1, 0, -1, 1, -1, -1, 1])
    np.testing.assert_array_equal(flat.weak_step_correct[:4], [-1, 0, -1, -1])
    np.testing.assert_array_equal(flat.strong_present[:7], [True, True, False, False, False, False, False])
    np.testing.assert_array_equal(flat.strong_tokens[:4], [20, 7, 0, 0])
    np.testing.assert_allclose(flat.strong_prm[:4], [0.8, 0.6, 0.0, 0.0])
    np.testing.assert_array_equal(flat.strong_final[:4], [False, True, False, False])
    np.testing.assert_array_equal(flat.strong_correct[:4], [-1, 1, -1, -1])
    np.testing.assert_array_equal(flat.strong_step_correct[:4], [1, -1, -1, -1])
    # the truncated chain: nothing final, nothing correct
    assert not flat.weak_final[7:].any()
    assert (flat.weak_correct[7:] == -1).all()


def test_history_features(flat):
    np.testing.assert_allclose(flat.prev_min[:7], [1.0, 0.9, 0.8, 0.7, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(flat.prev_prod[:7], [1.0, 0.9, 0.8, 0.8 * 0.7, 1.0, 0.5, 0.25])
    np.testing.assert_allclose(flat.in_prm[:7], [NAN, 0.9, 0.8, 0.7, NAN, 0.5, 0.5])
    np.testing.assert_array_equal(flat.in_tokens[:7], [0, 10, 20, 11, 0, 3, 4])
    np.testing.assert_allclose(flat.prev_prod[7:], 0.5 ** np.arange(MAX_STEPS))
    assert flat.prev_min[7] == 1.0 and (flat.prev_min[8:] == 0.5).all()


def test_weak_only(flat):
    w = flat.weak_only()
    np.testing.assert_array_equal(w["correct"], [False, True, False])
    np.testing.assert_array_equal(w["weak_tokens"], [10 + 5, 3 + 4 + 5, sum(range(3, 3 + MAX_STEPS))])
    np.testing.assert_array_equal(w["steps"], [2, 3, MAX_STEPS])


def test_weak_only_correct_deep_path(tmp_path, make_tree):
    # Make the all-keep path go 0 -> 1 -> (new node 4, final correct).
    tree = make_tree()
    tree["nodes"][1]["weak"] = {"tokens": 5, "prm": 0.5, "final": False}
    tree["nodes"][1]["keep"] = 4
    tree["nodes"].append({"weak": {"tokens": 6, "prm": 0.4, "final": True, "correct": True}, "keep": None,
                          "strong": {"tokens": 8, "prm": 0.3, "final": True, "correct": False}, "regenerate": None})
    path = tmp_path / "t.jsonl"
    write_trees(path, [make_tree(), tree])
    f = load_flat(path)
    w = f.weak_only()
    np.testing.assert_array_equal(w["correct"], [False, True])
    np.testing.assert_array_equal(w["weak_tokens"], [15, 21])
    np.testing.assert_array_equal(w["steps"], [2, 3])
    assert f.keep_child[4 + 1] == 4 + 4
    assert f.prev_min[8] == pytest.approx(0.5) and f.prev_prod[8] == pytest.approx(0.45)


def test_subset_reorders_and_remaps(flat):
    s = flat.subset(np.array([1, 0]))
    assert s.n_trees == 2 and s.n_nodes == 7
    np.testing.assert_array_equal(s.tree_root, [0, 3])
    np.testing.assert_array_equal(s.n_nodes_per_tree, [3, 4])
    np.testing.assert_array_equal(s.keep_child, [1, 2, -1, 4, -1, 6, -1])
    np.testing.assert_array_equal(s.regen_child, [ABSENT] * 3 + [5, -1, ABSENT, ABSENT])
    np.testing.assert_array_equal(s.parent, [-1, 0, 1, -1, 3, 3, 5])
    np.testing.assert_array_equal(s.tree_index, [0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(s.depth, [0, 1, 2, 0, 1, 1, 2])
    np.testing.assert_allclose(s.prev_prod, [1.0, 0.5, 0.25, 1.0, 0.9, 0.8, 0.56])
    assert s.problem_id == ["chain/3", "toy/test/0"]
    assert [h["problem_id"] for h in s.headers] == s.problem_id
    np.testing.assert_array_equal(s.max_interventions, [0, 1])
    np.testing.assert_array_equal(s.level, [NAN, 2.0])
    w = s.weak_only()
    np.testing.assert_array_equal(w["correct"], [True, False])
    np.testing.assert_array_equal(w["steps"], [3, 2])
    # the original is untouched
    np.testing.assert_array_equal(flat.tree_root, [0, 4, 7])


def test_subset_empty(flat):
    s = flat.subset(np.array([], dtype=np.int64))
    assert s.n_trees == 0 and s.n_nodes == 0
    assert {k: v.size for k, v in s.weak_only().items()} == {"correct": 0, "weak_tokens": 0, "steps": 0}


def test_load_flat_several_files(tmp_path, make_tree, make_chain):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    write_trees(a, [make_chain(2)])
    write_trees(b, [make_tree()])
    f = load_flat(a, b)
    assert f.sources == [str(a), str(b)]
    assert f.problem_id == ["chain/2", "toy/test/0"]
    np.testing.assert_array_equal(f.tree_root, [0, 2])
    np.testing.assert_array_equal(f.keep_child, [1, -1, 3, -1, 5, -1])
    np.testing.assert_array_equal(f.regen_child, [ABSENT, ABSENT, 4, -1, ABSENT, ABSENT])


def test_load_flat_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(TreeFormatError, match=r"empty\.jsonl: <file>: no trees in this file"):
        load_flat(path)


def test_repeated_problem_ids_are_a_warning_with_lines(tmp_path, make_tree):
    path = tmp_path / "twice.jsonl"
    write_trees(path, [make_tree(), make_tree(), make_tree()])
    with pytest.warns(UserWarning, match=r"twice\.jsonl:2: problem_id 'toy/test/0' already appears on line 1 "
                                         r"\(2 repeated ids"):
        assert load_flat(path).n_trees == 3


def test_flatten_matches_load_flat(flat, three_trees):
    f = flatten([validate_tree(t) for t in three_trees])
    for name in PER_TREE + PER_NODE:
        np.testing.assert_array_equal(getattr(f, name), getattr(flat, name), err_msg=name)


def test_load_flat_reports_bad_tree(tmp_path, make_tree, write_jsonl, assert_tree_error):
    bad = make_tree()
    bad["nodes"][0]["keep"] = 7
    path = write_jsonl(tmp_path / "bad.jsonl", [make_tree(), bad])
    with pytest.raises(TreeFormatError) as info:
        load_flat(path)
    assert_tree_error(info.value, path, 2, "nodes[0].keep")


def test_bundled_tree_file_invariants():
    """The shipped validation trees load and every child pointer is consistent with its parent."""
    f = load_flat(resource_path("trees", "math500_val.jsonl.gz"))
    assert f.n_trees > 0
    nodes = np.arange(f.n_nodes)
    for child, action, prm, tokens in ((f.keep_child, 0, f.weak_prm, f.weak_tokens),
                                       (f.regen_child, 1, f.strong_prm, f.strong_tokens)):
        has = child >= 0
        par, c = nodes[has], child[has]
        np.testing.assert_array_equal(f.parent[c], par)
        np.testing.assert_array_equal(f.parent_action[c], action)
        np.testing.assert_array_equal(f.tree_index[c], f.tree_index[par])
        np.testing.assert_array_equal(f.depth[c], f.depth[par] + 1)
        np.testing.assert_array_equal(f.interventions[c], f.interventions[par] + action)
        np.testing.assert_allclose(f.in_prm[c], prm[par])
        np.testing.assert_array_equal(f.in_tokens[c], tokens[par])
        np.testing.assert_allclose(f.prev_min[c], np.minimum(f.prev_min[par], prm[par]))
        np.testing.assert_allclose(f.prev_prod[c], f.prev_prod[par] * prm[par])
    k_max = f.max_interventions[f.tree_index]
    assert (f.interventions <= k_max).all()
    np.testing.assert_array_equal(f.regen_child == ABSENT, f.interventions == k_max)
    assert (f.depth < MAX_STEPS).all()
    np.testing.assert_array_equal(f.depth[f.tree_root], 0)
    w = f.weak_only()
    assert (w["steps"] >= 1).all() and (w["steps"] <= MAX_STEPS).all()
