"""Tests for trim_rl.data.grading: what counts as the same answer (docs/grading.md)."""

from __future__ import annotations

import json
import threading

import pytest

from trim_rl.data.grading import Verdict, extract_answer, grade, judge
from trim_rl.data.grading.numbers import base_numeral, parse_number
from trim_rl.data.grading.text import clean, strip_units


def _both_ways(pairs):
    return [*pairs, *[(r, p) for p, r in pairs]]


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
        ("\\boxed{0.333333}", "\\frac{1}{3}"),  # rounded to 6 places
        ("\\boxed{50\\%}", "50"),
        ("\\boxed{50\\%}", "0.5"),
        ("\\boxed{\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}}", "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}"),
    ],
)
def test_equivalent_answers_accepted(prediction, reference):
    assert grade(prediction, reference) is True
    assert judge(prediction, reference) is Verdict.CORRECT


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
        ("\\boxed{0.3333}", "\\frac{1}{3}"),  # 4 places are not 1/3
        ("\\boxed{1234.57}", "1234.56"),  # close relatively, a cent off absolutely
        ("\\boxed{\\begin{pmatrix} -1 & 5 \\\\ 0 & -1 \\end{pmatrix}}", "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}"),
    ],
)
def test_different_answers_rejected(prediction, reference):
    assert grade(prediction, reference) is False
    assert judge(prediction, reference) is Verdict.INCORRECT


@pytest.mark.parametrize("prediction", ["", "   ", None])
def test_empty_prediction_rejected(prediction):
    assert grade(prediction, "2") is False


def test_grade_in_worker_thread():
    out = {}
    th = threading.Thread(target=lambda: out.update(ok=grade("\\boxed{0.5}", "\\frac{1}{2}"),
                                                    bad=grade("\\boxed{0.4}", "\\frac{1}{2}"),
                                                    sym=grade("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}")))
    th.start()
    th.join(60)
    assert out == {"ok": True, "bad": False, "sym": True}


def test_extract_answer():
    assert extract_answer("we get \\boxed{1} and then \\boxed{\\frac{a}{b}} done") == "\\frac{a}{b}"
    assert extract_answer("no final answer") is None


@pytest.mark.parametrize(
    "answer", ["\\sqrt{51}", "\\left( 3, \\frac{\\pi}{2} \\right)", "6 - 5i", "\\pi", "x^2+1"],
)
def test_bare_latex_answer_matches_itself(answer):
    assert grade(answer, answer) is True


def test_verdict_is_bool_like_and_json_friendly():
    assert bool(Verdict.CORRECT) and not Verdict.INCORRECT and not Verdict.TIMEOUT
    assert json.dumps({"grade": Verdict.TIMEOUT}) == '{"grade": "timeout"}'
    assert str(Verdict.CORRECT) == "correct" and Verdict("timeout") is Verdict.TIMEOUT


# -- the blind spots, each a class --------------------------------------------------------------

@pytest.mark.parametrize("prediction,reference", _both_ways([
    ("3.83 \\times 10^{35}", "3.83e35"),
    ("3.83\\cdot10^{35}", "3.83e35"),
    ("3.83 × 10^{35}", "3.83E+35"),
    ("383000000000000000000000000000000000", "3.83e35"),
    ("1 \\times 10^{-5}", "1e-5"),
    ("0.00001", "1e-5"),
    ("2.7778 \\times 10^{-6}", "2.7778e-6"),
    ("-4 \\times 10^{3}", "-4e3"),
]))
def test_scientific_notation_accepted(prediction, reference):
    assert grade(f"\\boxed{{{prediction}}}", reference) is True


@pytest.mark.parametrize("prediction,reference", _both_ways([
    ("3.84 \\times 10^{35}", "3.83e35"),
    ("3.83 \\times 10^{34}", "3.83e35"),
    ("5 \\times 10^{-10}", "3.89e-10"),  # tiny numbers are not all equal to each other
    ("2e-7", "1e-7"),
    ("0", "3.89e-10"),
]))
def test_scientific_notation_rejected(prediction, reference):
    assert grade(f"\\boxed{{{prediction}}}", reference) is False


def test_e_notation_needs_digits_after_e():
    assert clean("2e") == "2e" and clean("3.5e2") == "3.5\\times 10^{2}"
    assert grade("\\boxed{2e}", "2e") is True and grade("\\boxed{2e}", "2") is False


@pytest.mark.parametrize("prediction,expected", [
    ("\\boxed{69, 84}", True),
    ("\\boxed{84, 69}", True),
    ("\\boxed{69 \\text{ and } 84}", True),
    ("\\boxed{69}", False),  # a part of the answer is not the answer
    ("\\boxed{84}", False),
    ("\\boxed{69, 84, 100}", False),
])
def test_several_answers_must_all_match(prediction, expected):
    assert grade(prediction, "69, 84") is expected
    assert grade(prediction, "69$,$84") is expected  # as OlympiadBench writes it, given by hand


def test_several_answers_equations():
    ref = "f(x)=-1, f(x)=x+1"
    assert grade("\\boxed{f(x)=x+1, f(x)=-1}", ref) is True
    assert grade("\\boxed{f(x)=-1}", ref) is False


@pytest.mark.parametrize("prediction,reference,expected", [
    ("\\boxed{18.90}", "\\$18.90", True),
    ("\\boxed{\\$18.90}", "18.90", True),
    ("\\boxed{\\$18.90}", "\\$18.90", True),
    ("$18.90", "18.90", True),  # a bare money answer, not a formula delimiter
    ("It costs $5 plus $13.90, so \\boxed{\\$18.90}", "18.90", True),
    ("\\boxed{\\$32,\\!348}", "32348", True),
    ("\\boxed{\\$18.91}", "\\$18.90", False),
    ("\\boxed{\\$36}", "18", False),
])
def test_money(prediction, reference, expected):
    assert grade(prediction, reference) is expected


# Boxed answers against references, one table per class of notation.
BOXED_CLASSES = {
    "thin-space": [  # thin-space thousands; any other thin space is a space
        ("1\\,440", "1440", True),
        ("1\\,000", "1000", True),
        ("1\\,000", "0", False),  # not 1*0
        ("1\\,000", "1", False),
        ("1\\;000\\;000", "1000000", True),
        ("1{,}000", "1000", True),
        ("10,\\!080", "10080", True),
        ("11,\\! 111,\\! 111,\\! 100", "11111111100", True),
        ("1\u2009440", "1440", True),  # a Unicode thin space
        ("0.123\\,456", "0.123456", True),
        ("2\\,x", "2x", True),  # a thin space that is not a thousands separator is a space
    ],
    "degree": [  # the degree sign and its LaTeX forms
        ("30°", "30^\\circ", True),
        ("30°", "30", True),
        ("30", "30^{\\circ}", True),
        ("30 \\text{ degrees}", "30^\\circ", True),
        ("30^\\circ", "30°", True),
        ("\\frac{270}{7}°", "\\frac{270}7\\text{ degrees}", True),
        ("31°", "30^\\circ", False),
        ("(45°, 60°)", "(45^{\\circ}, 60^{\\circ})", True),
    ],
    "base": [  # a base-b numeral keeps its base
        ("52_8", "52_8", True),
        ("52_{8}", "52_8", True),
        ("(52)_8", "52_8", True),
        ("52", "52_8", True),  # the digits, in the base the problem asks for
        ("52_9", "52_8", False),  # another base is another answer
        ("42", "52_8", False),  # 52_8 is 42, but the question asks for base 8
        ("52_{10}", "52_8", False),
        ("4210_{5}", "4210_5", True),
        ("4211_5", "4210_{5}", False),
        ("101010_2", "42", True),  # a plain reference: the numeral's value
        ("101011_2", "42", False),
    ],
    "units": [  # units are dropped; a letter in a reference is a variable
        ("36 dollars", "36", True),
        ("36 \\text{ dollars}", "36", True),
        ("\\$36 \\text{ dollars}", "\\$36", True),
        ("6m", "6", True),
        ("6 \\text{ m}", "6", True),
        ("12 apples", "12", True),
        ("864 \\text{ inches}^2", "864 \\mbox{ inches}^2", True),
        ("864", "864 \\mbox{ inches}^2", True),
        ("5.4", "5.4 \\text{ cents}", True),
        ("15 \\text{cm}^2", "15\\mbox{ cm}^2", True),
        ("2\\sqrt{3} \\text{ cm}", "2\\sqrt{3}", True),
        ("37 dollars", "36", False),
        ("3", "3 n", False),  # a letter in a reference is a variable, not a unit
        ("3n", "3 n", True),
        ("\\frac{37}{4}", "\\frac{37}{4} m", False),
    ],
}


@pytest.mark.parametrize("prediction,reference,expected", [
    pytest.param(p, r, e, id=f"{name}-{i}") for name, cases in BOXED_CLASSES.items() for i, (p, r, e) in enumerate(cases)
])
def test_notation_classes(prediction, reference, expected):
    assert grade(f"\\boxed{{{prediction}}}", reference) is expected


def test_strip_units_keeps_answers_that_are_words():
    assert strip_units("\\text{east}") == "\\text{east}"
    assert strip_units("6 m") == "6 m" and strip_units("6 m", loose=True) == "6"
    assert strip_units("3 n", loose=True) == "3 n"  # n is no unit
    assert strip_units("2\\mathrm{e}") == "2\\mathrm{e}"  # Euler's e is not a unit


def test_parse_number_classes():
    assert parse_number("1,000").value == 1000
    assert parse_number("\\frac{3}{4}").value * 4 == 3
    assert parse_number("-2.5 \\times 10^{3}").value == -2500
    assert parse_number("50\\%").percent
    assert parse_number("x+1") is None and parse_number("1,2") is None
    assert parse_number("10^{100000}") is None  # not built here


def test_base_numeral_needs_valid_digits():
    assert base_numeral("52_8") == ("52", 8)
    assert base_numeral("19_8") is None and base_numeral("x_2") is None and base_numeral("A4_{11}") == ("A4", 11)


# -- answers without a box, reordered complex numbers, `$,$` lists, decimals of fractions ----------

@pytest.mark.parametrize("prediction,reference,expected", [
    ("The answer is 736.", "736", True),
    ("The answer is 735.", "736", False),
    ("The answer is 3.5.", "\\frac{7}{2}", True),
    ("So the final answer is 3/4.", "\\frac34", True),
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}", True),
    ("Final Answer: The final answer is $\\frac{3}{5}$. I hope it is correct.", "\\frac{3}{4}", False),
    ("We add the parts.\nThus 16 - 3 = 13.\nTherefore, the answer is $1\\,440$.", "1440", True),
    ("First the answer is 5, but that is wrong.\nRedoing it, the answer is 6.", "6", True),  # the last one
    ("First the answer is 5, but that is wrong.\nRedoing it, the answer is 6.", "5", False),
    ("**Answer:** 42", "42", True),
    ("The answer is 5, and then \\boxed{6}", "6", True),  # a box still wins
    ("She sells 16 - 3 - 4 = 9 eggs, so she makes 9 * 2 = 18 dollars. #### 18", "18", True),
    ("She sells 16 - 3 - 4 = 9 eggs, so she makes 9 * 2 = 18 dollars. #### 19", "18", False),
    ("#### 4", "4", True),
    ("#### 5", "4", False),
    ("Each costs $2, so in all 2 * 617 = $1,234.\n#### 1,234", "1234", True),
    ("The total is 9 * 2 = 18.\n#### 18\nI hope this helps, 17 is not it.", "18", True),
    ("The answer is $\\$18.90$.", "\\$18.90", True),
    ("The answers are $3$, $4$ and $5$.", "5, 4, 3", True),  # every formula of the list
    ("The answers are $3$ and $4$.", "5, 4, 3", False),  # the `\$` of money does not end the formula
    # a Markdown heading is no GSM8K answer line: math-verify reads the solution
    ("#### Step 1: count\nShe has 9 eggs, so she makes $9 \\cdot 2 = 18$ dollars.", "18", True),
    ("#### Step 1\nShe makes 9 * 2 = 18 dollars.\n#### 18", "18", True),
])
def test_answers_without_a_box(prediction, reference, expected):
    assert judge(prediction, reference) is (Verdict.CORRECT if expected else Verdict.INCORRECT)


@pytest.mark.parametrize("prediction,reference", _both_ways([
    ("2i + 1", "1 + 2i"),
    ("-3i+4", "4-3i"),
    ("-5i + 6", "6 - 5i"),
    ("274i+1", "1+274i"),
    ("7i - 2", "-2 + 7i"),
    ("i + \\frac{1}{2}", "\\frac12 + i"),
    ("2\\sqrt{3} i - 2", "-2+2 \\sqrt{3} i"),
]))
def test_complex_numbers_in_another_order(prediction, reference):
    assert grade(f"\\boxed{{{prediction}}}", reference) is True
    assert grade(prediction, reference) is True


@pytest.mark.parametrize("prediction,reference", _both_ways([
    ("5i + 6", "6 - 5i"),
    ("2i + 1", "1 - 2i"),
    ("i + 2", "1 + 2i"),
    ("2 + i", "1 + 2i"),
    ("2i", "1 + 2i"),
    ("-2\\sqrt{3} i - 2", "-2+2 \\sqrt{3} i"),
]))
def test_complex_numbers_that_differ(prediction, reference):
    assert grade(f"\\boxed{{{prediction}}}", reference) is False


@pytest.mark.parametrize("prediction,expected", [
    ("\\sqrt2$,$\\frac12", True),
    ("\\boxed{\\sqrt2$,$\\frac12}", True),
    ("$\\sqrt2$, $\\frac12$", True),
    ("$\\sqrt2$, $\\frac12$, $3$", False),
    ("\\frac12$,$\\sqrt 2", True),  # a list's order doesn't matter
    ("\\sqrt3$,$\\frac12", False),
    ("\\sqrt2$,$\\frac13", False),
    ("\\sqrt2", False),
])
def test_dollar_separated_list_without_braces(prediction, expected):
    assert grade(prediction, "\\sqrt{2}, \\frac{1}{2}") is expected


def test_clean_braces_single_token_arguments():
    assert clean("\\sqrt2, \\frac12") == "\\sqrt{2}, \\frac{1}{2}"
    assert clean("\\dfrac\\pi2 + \\frac{\\sqrt3}4") == "\\dfrac{\\pi}{2} + \\frac{\\sqrt{3}}{4}"
    assert clean("\\sqrt[3]2") == "\\sqrt[3]{2}"
    assert clean("\\frac{1}{2}") == "\\frac{1}{2}" and clean("\\sqrt{x+1}") == "\\sqrt{x+1}"


# The decimal policy (docs/grading.md): a decimal equals an exact reference when it is that value
# rounded or cut off to the decimals written, and has at least 5 significant digits.
@pytest.mark.parametrize("prediction,reference,expected", [
    ("0.053571", "\\frac{3}{56}", True),  # 3/56 = 0.0535714285...: rounded to 6 places
    ("0.0535714", "3/56", True),
    ("0.05357", "\\frac{3}{56}", False),  # 4 significant digits
    ("0.0536", "\\frac{3}{56}", False),
    ("0.053572", "\\frac{3}{56}", False),  # neither rounded nor cut off
    ("0.33333", "\\frac{1}{3}", True),
    ("0.333334", "\\frac{1}{3}", False),
    ("0.66667", "\\frac{2}{3}", True),  # rounded
    ("0.66666", "\\frac{2}{3}", True),  # cut off
    ("0.66668", "\\frac{2}{3}", False),
    ("6.66667 \\times 10^{4}", "\\frac{200000}{3}", True),
    ("6.6667 \\times 10^{4}", "\\frac{200000}{3}", True),
    ("6.6668 \\times 10^{4}", "\\frac{200000}{3}", False),
    ("176.29", "\\frac{1234}{7}", True),  # 176.2857...: 5 significant digits
    ("176.3", "\\frac{1234}{7}", False),
    ("0.000536", "\\frac{3}{5600}", False),  # 3 significant digits, however small the difference
    ("0.00053571", "\\frac{3}{5600}", True),
    ("735.99999", "736", False),
    ("33.333\\%", "\\frac{1}{3}", True),
])
def test_decimal_of_an_exact_reference(prediction, reference, expected):
    assert grade(f"\\boxed{{{prediction}}}", reference) is expected
