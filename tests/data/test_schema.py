"""Tests for trim_rl.data.schema: validation of ``trim_rl.tree/v1`` trees.

Every bad-input case writes a real file whose line 1 is a valid tree and whose line 2 is the bad
one, and checks that the TreeFormatError names the file, line 2 and the offending field.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trim_rl.data import MAX_STEPS, TreeFormatError, read_trees
from trim_rl.data.schema import CheckedTree, validate_tree


def read_bad(tmp_path, make_tree, write_jsonl, mutate, name="trees.jsonl"):
    """Write [good tree, mutated tree] to a file and return the TreeFormatError read_trees raises."""
    bad = make_tree()
    mutate(bad)
    path = write_jsonl(tmp_path / name, [make_tree(), bad])
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    return path, info.value


# --- the valid tree ------------------------------------------------------------------------------


def test_tiny_tree_is_valid_and_checked_columns(make_tree):
    t = validate_tree(make_tree(), "x.jsonl", 1)
    assert isinstance(t, CheckedTree)
    assert t.n_nodes == 4
    assert t.keep == [1, -1, 3, -1]
    assert t.regenerate == [2, -1, -2, -2]
    assert t.weak_final == [False, True, False, True]
    assert t.weak_correct == [-1, 0, -1, 1]
    assert t.weak_step_correct == [-1, 0, -1, -1]
    assert t.strong_present == [True, True, False, False]
    assert t.strong_correct == [-1, 1, -1, -1]
    assert t.strong_step_correct == [1, -1, -1, -1]
    assert t.weak_tokens == [10, 5, 11, 4]
    assert t.weak_prm == [0.9, 0.5, 0.7, 0.95]
    np.testing.assert_array_equal(t.depth, [0, 1, 1, 2])
    np.testing.assert_array_equal(t.interventions, [0, 0, 1, 1])
    np.testing.assert_array_equal(t.parent, [-1, 0, 0, 2])
    np.testing.assert_array_equal(t.parent_action, [-1, 0, 1, 0])
    assert t.header["max_interventions"] == 1
    assert t.header["strong_only"] == {"tokens": 27, "steps": 2, "correct": True}
    assert t.header["level"] == 2
    assert t.header["models"] == {"weak": "weak-model", "strong": "strong-model", "prm": "prm-model"}


def test_optional_fields_may_be_absent(make_tree):
    tree = make_tree()
    del tree["level"]
    for node in tree["nodes"]:
        for side in ("weak", "strong"):
            node.get(side, {}).pop("text", None)
            node.get(side, {}).pop("step_correct", None)
    t = validate_tree(tree)
    assert t.header["level"] is None
    assert "meta" not in t.header
    assert t.weak_step_correct == [-1] * 4


def test_meta_is_kept(make_tree):
    t = validate_tree(make_tree(meta={"seed": 3}))
    assert t.header["meta"] == {"seed": 3}


def test_integer_prm_scores_accepted(make_tree):
    tree = make_tree()
    tree["nodes"][0]["weak"]["prm"] = 1
    tree["nodes"][1]["weak"]["prm"] = 0
    t = validate_tree(tree)
    assert t.weak_prm[:2] == [1.0, 0.0]


def test_error_without_path_names_memory(make_tree):
    tree = make_tree()
    del tree["answer"]
    with pytest.raises(TreeFormatError) as info:
        validate_tree(tree)
    assert str(info.value) == "<memory>: answer: missing required field"
    assert isinstance(info.value, ValueError)


def test_read_trees_returns_the_decoded_trees(tmp_path, make_tree, write_jsonl):
    trees = [make_tree(), make_tree(problem_id="toy/test/1")]
    assert read_trees(write_jsonl(tmp_path / "t.jsonl", trees)) == trees


# --- one test per bad-input case ---------------------------------------------------------------


def test_missing_header_field(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t.pop("answer"))
    assert_tree_error(err, path, 2, "answer")
    assert "missing" in err.message


def test_missing_step_field(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t["nodes"][1]["weak"].pop("tokens"))
    assert_tree_error(err, path, 2, "nodes[1].weak.tokens")
    assert "missing" in err.message


def test_missing_prm(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t["nodes"][0]["strong"].pop("prm"))
    assert_tree_error(err, path, 2, "nodes[0].strong.prm")


def test_missing_models_entry(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t["models"].pop("prm"))
    assert_tree_error(err, path, 2, "models.prm")


def test_missing_keep(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t["nodes"][2].pop("keep"))
    assert_tree_error(err, path, 2, "nodes[2].keep")


def test_missing_strong_when_regenerate_present(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t["nodes"][0].pop("strong"))
    assert_tree_error(err, path, 2, "nodes[0].strong")


def test_missing_regenerate_while_budget_left(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t["nodes"][0].pop("regenerate"))
    assert_tree_error(err, path, 2, "nodes[0].regenerate")
    assert "missing" in err.message


def test_tokens_as_string(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][0]["weak"]["tokens"] = "48"

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[0].weak.tokens")
    assert "integer" in err.message and "string" in err.message


@pytest.mark.parametrize("value", [True, 4.0, None, -1])
def test_tokens_not_a_nonnegative_int(tmp_path, make_tree, write_jsonl, assert_tree_error, value):
    def mutate(t):
        t["nodes"][3]["weak"]["tokens"] = value

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[3].weak.tokens")


def test_prm_as_string(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][1]["strong"]["prm"] = "0.6"

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[1].strong.prm")


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_prm_out_of_unit_interval(tmp_path, make_tree, write_jsonl, assert_tree_error, value):
    def mutate(t):
        t["nodes"][2]["weak"]["prm"] = value

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[2].weak.prm")
    assert "[0, 1]" in err.message


def test_final_as_string(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][0]["weak"]["final"] = "false"

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[0].weak.final")


def test_max_interventions_as_float(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t.update(max_interventions=1.0))
    assert_tree_error(err, path, 2, "max_interventions")


def test_level_as_string(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t.update(level="3"))
    assert_tree_error(err, path, 2, "level")


def test_text_not_a_string(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][0]["weak"]["text"] = 12

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[0].weak.text")


def test_wrong_schema(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t.update(schema="trim_rl.tree/v0"))
    assert_tree_error(err, path, 2, "schema")


def test_line_not_an_object(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path = write_jsonl(tmp_path / "t.jsonl", [make_tree(), "[1, 2]"])
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    assert_tree_error(info.value, path, 2, "<line>")


def test_empty_nodes(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t.update(nodes=[]))
    assert_tree_error(err, path, 2, "nodes")


def test_node_not_an_object(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][3] = [1]

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[3]")


@pytest.mark.parametrize(
    "node,key,value",
    [(0, "keep", 99), (0, "keep", 4), (0, "regenerate", 4), (0, "keep", 0), (2, "keep", 2), (0, "keep", -1)],
    ids=["keep-99", "keep-n", "regen-n", "keep-root", "keep-self", "keep-negative"],
)
def test_child_index_out_of_range(tmp_path, make_tree, write_jsonl, assert_tree_error, node, key, value):
    def mutate(t):
        t["nodes"][node][key] = value

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, f"nodes[{node}].{key}")
    assert "out of range" in err.message


def test_child_index_as_string(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][0]["keep"] = "1"

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[0].keep")


def test_cycle(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        # node 3 (child of 2) points back to its parent 2: 2 -> 3 -> 2.
        t["nodes"][3]["weak"] = {"tokens": 4, "prm": 0.95, "final": False}
        t["nodes"][3]["keep"] = 2

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[3].keep")
    assert "cycle" in err.message


def test_node_with_two_parents(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][2]["keep"] = 1  # node 1 is already the keep child of node 0

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[2].keep")
    assert "parent" in err.message and "cycle" not in err.message


def test_unreachable_node(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"].append({"weak": {"tokens": 1, "prm": 0.5, "final": True, "correct": True}, "keep": None})

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[4]")
    assert "reachable" in err.message


def test_regenerate_past_max_interventions(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        # node 2 was reached by a regeneration and max_interventions is 1.
        t["nodes"][2]["strong"] = {"tokens": 6, "prm": 0.9, "final": True, "correct": True}
        t["nodes"][2]["regenerate"] = None

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[2].regenerate")
    assert "max_interventions" in err.message


def test_regenerate_anywhere_with_zero_budget(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t.update(max_interventions=0))
    assert_tree_error(err, path, 2, "nodes[0].regenerate")
    assert "max_interventions" in err.message


def test_weak_final_without_correct(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t["nodes"][1]["weak"].pop("correct"))
    assert_tree_error(err, path, 2, "nodes[1].weak.correct")


def test_strong_final_without_correct(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t["nodes"][1]["strong"].pop("correct"))
    assert_tree_error(err, path, 2, "nodes[1].strong.correct")


def test_final_with_null_correct(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][3]["weak"]["correct"] = None

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[3].weak.correct")


def test_correct_on_non_final_step(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][0]["weak"]["correct"] = True

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[0].weak.correct")


def test_keep_set_on_final_weak_step(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][3]["keep"] = 1

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[3].keep")
    assert "final" in err.message


def test_keep_null_on_non_final_weak_step(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][2]["keep"] = None

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[2].keep")


def test_regenerate_null_on_non_final_strong_step(tmp_path, make_tree, write_jsonl, assert_tree_error):
    def mutate(t):
        t["nodes"][0]["regenerate"] = None

    path, err = read_bad(tmp_path, make_tree, write_jsonl, mutate)
    assert_tree_error(err, path, 2, "nodes[0].regenerate")


def test_nan_prm_literal(tmp_path, make_tree, write_jsonl, assert_tree_error):
    bad = make_tree()
    bad["nodes"][2]["weak"]["prm"] = float("nan")
    line = json.dumps(bad)  # Python writes the non-standard literal NaN
    assert "NaN" in line
    path = write_jsonl(tmp_path / "t.jsonl", [make_tree(), line])
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    assert_tree_error(info.value, path, 2, "nodes[2].weak.prm")
    assert "nan" in info.value.message


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity"])
def test_infinite_prm_literal(tmp_path, make_tree, write_jsonl, assert_tree_error, literal):
    line = json.dumps(make_tree()).replace('"prm": 0.8', f'"prm": {literal}')
    assert literal in line
    path = write_jsonl(tmp_path / "t.jsonl", [make_tree(), line])
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    assert_tree_error(info.value, path, 2, "nodes[0].strong.prm")


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda so: so.update(correct="yes"), "strong_only.correct"),
        (lambda so: so.update(correct=None), "strong_only.correct"),
        (lambda so: so.pop("correct"), "strong_only.correct"),
        (lambda so: so.update(steps=0), "strong_only.steps"),
        (lambda so: so.update(steps=MAX_STEPS + 1), "strong_only.steps"),
        (lambda so: so.update(steps=2.5), "strong_only.steps"),
        (lambda so: so.update(tokens=-1), "strong_only.tokens"),
        (lambda so: so.update(tokens="27"), "strong_only.tokens"),
    ],
    ids=["correct-str", "correct-null", "correct-missing", "steps-0", "steps-too-many", "steps-float",
         "tokens-negative", "tokens-str"],
)
def test_bad_strong_only(tmp_path, make_tree, write_jsonl, assert_tree_error, mutate, field):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: mutate(t["strong_only"]))
    assert_tree_error(err, path, 2, field)


@pytest.mark.parametrize("value", [None, [27, 2, True], "strong"], ids=["null", "array", "string"])
def test_strong_only_not_an_object(tmp_path, make_tree, write_jsonl, assert_tree_error, value):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t.update(strong_only=value))
    assert_tree_error(err, path, 2, "strong_only")


def test_strong_only_missing(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t.pop("strong_only"))
    assert_tree_error(err, path, 2, "strong_only")


def test_bad_tree_in_gzip_file(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path, err = read_bad(tmp_path, make_tree, write_jsonl, lambda t: t["nodes"][1]["weak"].pop("correct"),
                         name="trees.jsonl.gz")
    assert_tree_error(err, path, 2, "nodes[1].weak.correct")


def test_first_violation_is_reported(tmp_path, make_tree, write_jsonl, assert_tree_error):
    bad2, bad3 = make_tree(), make_tree()
    del bad2["problem"]
    del bad3["answer"]
    path = write_jsonl(tmp_path / "t.jsonl", [make_tree(), bad2, bad3])
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    assert_tree_error(info.value, path, 2, "problem")


def test_line_numbers_count_blank_lines(tmp_path, make_tree, write_jsonl, assert_tree_error):
    bad = make_tree()
    del bad["dataset"]
    path = write_jsonl(tmp_path / "t.jsonl", [make_tree(), "", "   ", bad])
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    assert_tree_error(info.value, path, 4, "dataset")


# --- the depth limit ------------------------------------------------------------------------------


def test_chain_to_depth_limit_may_end_without_final(make_chain):
    t = validate_tree(make_chain(MAX_STEPS, final_last=False))
    assert t.n_nodes == MAX_STEPS
    assert int(t.depth.max()) == MAX_STEPS - 1
    assert t.keep[-1] == -1 and not t.weak_final[-1]


def test_non_final_leaf_before_depth_limit_is_rejected(make_chain):
    with pytest.raises(TreeFormatError) as info:
        validate_tree(make_chain(MAX_STEPS - 1, final_last=False), "c.jsonl", 5)
    assert info.value.field == f"nodes[{MAX_STEPS - 2}].keep"
    assert info.value.line == 5


def test_chain_past_depth_limit_is_rejected(make_chain):
    with pytest.raises(TreeFormatError) as info:
        validate_tree(make_chain(MAX_STEPS + 1), "c.jsonl", 1)
    assert info.value.field == f"nodes[{MAX_STEPS - 1}].keep"
    assert "depth limit" in info.value.message


def test_prm_nan_in_memory_rejected(make_tree):
    tree = make_tree()
    tree["nodes"][0]["weak"]["prm"] = math.nan
    with pytest.raises(TreeFormatError, match=r"nodes\[0\]\.weak\.prm"):
        validate_tree(tree)
