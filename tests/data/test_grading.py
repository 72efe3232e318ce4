"""Tests for trim_rl.data.grading: symbolic answer equivalence with math-verify."""

from __future__ import annotations

import threading

import pytest

from trim_rl.data.grading import extract_answer, grade


@pytest.mark.parametrize(
    "prediction,reference",
    [
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("2", "2.0"),
        ("2.0", "2"),
        ("1/2", "\\frac12"),
        ("\\boxed{18}", "18"),
        ("18", "\\boxed{18}"),
        ("\\boxed{1,000}", "1000"),
        ("The answer is $\\frac{1}{2}$, i.e. \\boxed{\\frac{1}{2}}.", "0.5"),
        ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{x^2+1}", "1+x^2"),
        ("\\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{2}, finally \\boxed{3}", "3"),
        ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}"),
    ],
)
def test_equivalent_answers_accepted(prediction, reference):
    assert grade(prediction, reference) is True


@pytest.mark.parametrize(
    "prediction,reference",
    [
        ("3", "2"),
        ("\\boxed{3}", "2"),
        ("-2", "2"),
        ("\\frac{1}{3}", "0.5"),
        ("2.01", "2"),
        ("\\boxed{x^2-1}", "1+x^2"),
        ("\\boxed{(3, \\pi)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("first \\boxed{2}, finally \\boxed{3}", "2"),  # only the last box counts
        ("\\boxed{\\text{Alice}}", "\\text{Evelyn}"),
    ],
)
def test_different_answers_rejected(prediction, reference):
    assert grade(prediction, reference) is False


@pytest.mark.parametrize("prediction", ["", "   ", None])
def test_empty_prediction_rejected(prediction):
    assert grade(prediction, "2") is False


def test_grade_in_worker_thread():
    # math-verify timeouts use signals; grading must still work outside the main thread.
    out = {}
    th = threading.Thread(target=lambda: out.update(ok=grade("\\boxed{0.5}", "\\frac{1}{2}"),
                                                    bad=grade("\\boxed{0.4}", "\\frac{1}{2}")))
    th.start()
    th.join(60)
    assert out == {"ok": True, "bad": False}


def test_extract_answer():
    assert extract_answer("we get \\boxed{1} and then \\boxed{\\frac{a}{b}} done") == "\\frac{a}{b}"
    assert extract_answer("no final answer") is None


@pytest.mark.parametrize(
    "answer", ["\\sqrt{51}", "\\left( 3, \\frac{\\pi}{2} \\right)", "6 - 5i", "\\pi", "x^2+1"],
)
def test_bare_latex_answer_matches_itself(answer):
    assert grade(answer, answer) is True
