"""Tests for trim_rl.data.problems: the shipped benchmarks and custom problem files."""

from __future__ import annotations

import functools
import json
import re

import pytest

from trim_rl.data import TreeFormatError
from trim_rl.data.problems import BENCHMARKS, Problem, join_formulas, last_boxed, load_problems

# Published sizes of the benchmarks (aime: AIME 1983-2024, train + test files).
SIZES = {"math500": 500, "aime24": 30, "amc23": 40, "gsm8k": 1319, "minerva": 272, "olympiadbench": 675}


@functools.cache
def cached(name: str) -> tuple[Problem, ...]:
    return tuple(load_problems(name))


def test_benchmark_names():
    assert set(BENCHMARKS) == {"math500", "aime", "aime24", "amc23", "olympiadbench", "minerva", "gsm8k"}


@pytest.mark.parametrize("name", BENCHMARKS)
def test_load_benchmark(name):
    problems = cached(name)
    assert len(problems) > 0
    if name in SIZES:
        assert len(problems) == SIZES[name]
    for p in problems:
        assert isinstance(p, Problem)
        assert p.dataset == name
        assert isinstance(p.problem, str) and p.problem.strip(), p.problem_id
        assert isinstance(p.answer, str) and p.answer.strip(), p.problem_id
        assert p.answer == p.answer.strip()
        assert p.problem_id.startswith(f"{name}/")
        assert p.source_split in ("train", "test")
    ids = [p.problem_id for p in problems]
    assert len(set(ids)) == len(ids), "problem ids must be unique"


def test_math500_levels():
    problems = cached("math500")
    levels = [p.level for p in problems]
    assert all(isinstance(lv, int) and 1 <= lv <= 5 for lv in levels)
    assert set(levels) == {1, 2, 3, 4, 5}
    assert all(p.extra.get("subject") for p in problems)
    assert all(p.problem_id.startswith("math500/test/") for p in problems)


@pytest.mark.parametrize("name", [b for b in BENCHMARKS if b != "math500"])
def test_other_benchmarks_have_no_level(name):
    assert all(p.level is None for p in cached(name))


@pytest.mark.parametrize("name", ["aime24", "amc23", "gsm8k"])
def test_numeric_answers(name):
    for p in cached(name):
        assert re.fullmatch(r"-?\d+(\.\d+)?", p.answer), (p.problem_id, p.answer)


def test_gsm8k_answers_are_final_numbers():
    for p in cached("gsm8k"):
        assert "####" not in p.answer and "," not in p.answer


def test_aime_splits_and_years():
    problems = cached("aime")
    assert {p.source_split for p in problems} == {"train", "test"}
    years = {p.extra["year"] for p in problems}
    assert min(years) <= 1990 and max(years) >= 2020
    numbers = {p.extra["number"] for p in problems}
    assert numbers <= set(range(1, 16))
    # AIME answers are integers 0..999, except for a published dual-answer problem.
    assert sum(not re.fullmatch(r"\d{1,3}", p.answer) for p in problems) <= 1


def test_unknown_benchmark_raises_clear_error():
    with pytest.raises(ValueError) as info:
        load_problems("no_such_benchmark")
    msg = str(info.value)
    assert "no_such_benchmark" in msg and "unknown benchmark" in msg
    assert all(b in msg for b in BENCHMARKS)
    assert not isinstance(info.value, TreeFormatError)


def test_custom_jsonl_file(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"id": "a", "problem": "1+1?", "answer": 2, "level": 3},
        {"question": "2+2?", "answer": 4.0},
        "",
        {"problem_id": "z", "problem": "half?", "answer": "\\frac{1}{2}", "level": "hard"},
    ])
    problems = load_problems(str(path))
    assert [p.problem_id for p in problems] == ["mine/a", "mine/2", "mine/z"]
    assert [p.problem for p in problems] == ["1+1?", "2+2?", "half?"]
    assert [p.answer for p in problems] == ["2", "4", "\\frac{1}{2}"]
    assert [p.level for p in problems] == [3, None, None]
    assert all(p.dataset == "mine" for p in problems)


def test_custom_file_missing_answer(tmp_path, write_jsonl, assert_tree_error):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"problem": "a", "answer": "1"}, {"problem": "b"}])
    with pytest.raises(TreeFormatError) as info:
        load_problems(str(path))
    assert_tree_error(info.value, path, 2, "answer")


def test_custom_file_missing_problem(tmp_path, write_jsonl, assert_tree_error):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"problem": "a", "answer": "1"}, {"answer": "2", "problem": 5}])
    with pytest.raises(TreeFormatError) as info:
        load_problems(str(path))
    assert_tree_error(info.value, path, 2, "problem")


def test_custom_file_not_object(tmp_path, write_jsonl, assert_tree_error):
    path = write_jsonl(tmp_path / "mine.jsonl.gz", [{"problem": "a", "answer": "1"}, json.dumps([1])])
    with pytest.raises(TreeFormatError) as info:
        load_problems(str(path))
    assert_tree_error(info.value, path, 2, "<line>")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so \\boxed{5}.", "5"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\fbox{x^{2}}", "x^{2}"),
        ("\\boxed {7}", "7"),
        ("no box here", None),
        ("\\boxed{unbalanced", None),
        ("\\boxed", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("$69$,$84$", "69, 84"),
        ("$f(n)=n$, $g(n)=1$", "f(n)=n, g(n)=1"),
        ("$-1$,$2$,$-2$", "-1, 2, -2"),
        ("$x=1$ or $x=2$", "x=1, x=2"),
        ("$221,$8$", "221, 8"),  # an odd count: every `$` separates
        ("$(-\\infty, 0) \\cup\\{1\\}$.", "(-\\infty, 0) \\cup\\{1\\}"),
        ("$f(x)=a x+b$, where $b$ is an integer", "f(x)=a x+b"),  # prose qualifies the first formula
        ("$(1,8,19), (2,7,13)$", "(1,8,19), (2,7,13)"),
        ("1,3,5", "1,3,5"),
    ],
)
def test_join_formulas(raw, expected):
    assert join_formulas(raw) == expected


def test_references_hold_no_formula_delimiters():
    # OlympiadBench's `$69$,$84$` and Minerva's `+$ $` (a line break in the source) are one answer
    for name in ("olympiadbench", "minerva"):
        assert not [p.answer for p in cached(name) if "$" in p.answer]
    answers = {p.answer for p in cached("olympiadbench")}
    assert {"69, 84", "f(x)=x, f(x)=2-x", "221, 8"} <= answers


def test_every_piece_of_an_olympiadbench_answer_is_graded():
    from trim_rl.data.grading import grade

    p = next(p for p in cached("olympiadbench") if p.answer == "69, 84")
    assert grade("\\boxed{69, 84}", p.answer) and grade("\\boxed{84, 69}", p.answer)
    assert not grade("\\boxed{69}", p.answer) and not grade("\\boxed{84}", p.answer)
