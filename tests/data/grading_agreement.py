r"""Labelled (prediction, reference) pairs built from the shipped benchmarks, a grader's agreement
with them, and what grading costs per call.

It measures; tests/data/test_grading_agreement.py runs it as a test. Each reference yields
rewritings that must be accepted (a solution sentence around ``\boxed{}``, an answer stated without
a box, "The answer is X." or GSM8K's ``#### X``, a bare ``$X$``, thousands separators and thin
spaces, money and unit words, degree signs, e-notation, fractions as decimals under the decimal
policy of docs/grading.md, base subscripts, complex numbers and answer lists reordered, ``\frac12``
and ``\sqrt2`` without braces, OlympiadBench's ``a$,$b``) and perturbations that must be rejected
(another number, a changed digit or mantissa, another base, part of a list, a conjugate, a decimal
too short or off in its last digit, another problem's answer). The labels come from how each pair
is made, not from any grader. A false positive is a rejected pair that the grader accepts.

    .venv/bin/python tests/data/grading_agreement.py                 # this checkout's grader
    .venv/bin/python tests/data/grading_agreement.py --grader FILE --problems FILE2
        # another grade(), given the references of another problems.py (e.g. both from main)
    .venv/bin/python tests/data/grading_agreement.py --timing        # cost per call, per path
"""

from __future__ import annotations

import argparse
import collections
import decimal
import importlib.util
import random
import re
import sys
import time
from fractions import Fraction

_INT = re.compile(r"-?\d+")
_DEC = re.compile(r"-?\d*\.\d+")
_ENOT = re.compile(r"(-?[\d.]+)e(-?\d+)")
_FRAC = re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")
_BASE = re.compile(r"(\w+)_\{?(\d+)\}?")
_DEG = re.compile(r"([^,]+?)\^\{?\\circ\}?")
_COMPLEX = re.compile(r"(-?\d+)\s*([+-])\s*(\d*)i")
_ONE_DIGIT_ARG = re.compile(r"\\(d?frac\{\d\}\{\d\}|sqrt\{\d\})")
MIN_DIGITS = 5  # the decimal policy (docs/grading.md): significant digits a decimal of a fraction needs


def _thousands(n: str, sep: str) -> str:
    sign, d = ("-", n[1:]) if n.startswith("-") else ("", n)
    groups = []
    while len(d) > 3:
        groups.insert(0, d[-3:])
        d = d[:-3]
    return sign + sep.join([d, *groups])


def _other_digit(s: str, rng: random.Random) -> str | None:
    idx = [i for i, ch in enumerate(s) if ch.isdigit()]
    if not idx:
        return None
    i = rng.choice(idx)
    return s[:i] + str((int(s[i]) + rng.randint(1, 8)) % 10) + s[i + 1:]


def _top_level_pieces(ref: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in ref:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*out, cur.strip()]


def _unbraced(ref: str) -> str:
    r"""``\frac{1}{2}`` as ``\frac12``, ``\sqrt{2}`` as ``\sqrt2`` (one-digit arguments only)."""
    return _ONE_DIGIT_ARG.sub(lambda m: "\\" + re.sub(r"[{}]", "", m[1]), ref)


def _significant(v: Fraction, digits: int, cut: bool = False) -> str:
    """``v`` as a plain decimal with ``digits`` significant digits, rounded (or cut off)."""
    d = decimal.Decimal(v.numerator) / decimal.Decimal(v.denominator)
    q = decimal.Decimal(1).scaleb(d.adjusted() - digits + 1)
    return format(d.quantize(q, rounding=decimal.ROUND_DOWN if cut else decimal.ROUND_HALF_EVEN), "f")


def _stated(ref: str) -> str:
    # a formula is written as one in a sentence; a plain number, word or `6 - 5i` as it is
    return f"${ref}$" if re.search(r"[\\{}^_]", ref) else ref


def _bare(answer: str) -> str:
    # `x=5`, `05` and `5` name the same answer: another problem's answer must differ from it
    s = re.sub(r"^[a-z]\s*=\s*|\s+", "", answer)
    return str(int(s)) if _INT.fullmatch(s) else s


def pairs_for(dataset: str, ref: str, other: str, multi: bool, rng: random.Random) -> list[tuple[str, str, bool, str]]:
    """(prediction, reference, label, family) pairs for one reference."""
    pos: list[tuple[str, str]] = [(f"So the final answer is $\\boxed{{{ref}}}$.", "sentence"),
                                  (f"The answer is {_stated(ref)}.", "answer-is"),
                                  (f"Final Answer: The final answer is ${ref}$. I hope it is correct.", "final-answer-line"),
                                  (f"${ref}$", "dollars-bare")]
    neg: list[tuple[str, str]] = [(f"The answer is {_stated(other)}.", "answer-is-other")]
    if _INT.fullmatch(ref):
        n = int(ref)
        pos.append((f"\\boxed{{{n}.0}}", "decimal-point"))
        if abs(n) >= 1000:
            pos += [(f"\\boxed{{{_thousands(ref, ',')}}}", "comma-thousands"),
                    (f"\\boxed{{{_thousands(ref, chr(92) + ',')}}}", "thin-space-thousands"),
                    (f"\\boxed{{{_thousands(ref, '{,}')}}}", "brace-comma-thousands")]
        if dataset == "gsm8k":
            pos += [(f"\\boxed{{\\${ref}}}", "money"), (f"\\boxed{{{ref} dollars}}", "unit-word")]
        pos.append((f"\\boxed{{{ref}\\text{{ cm}}}}", "unit-text"))
        # GSM8K's format: the reasoning names other numbers, the last line gives the answer
        steps = f"First, {n + 7} - 7 = {n}, which we check against {other}.\n"
        pos.append((f"{steps}#### {_thousands(ref, ',') if rng.random() < 0.5 else ref}", "hashes"))
        neg += [(f"{steps}#### {n + rng.choice([-2, -1, 1, 2])}", "hashes-off"),
                (f"\\boxed{{{n + rng.choice([-1, 1])}}}", "int-off-by-one")]
        if n:
            neg += [(f"\\boxed{{{-n}}}", "int-sign"), (f"\\boxed{{{n * 10}}}", "int-times-ten")]
        if abs(n) >= 1000:
            neg.append((f"\\boxed{{{_thousands(str(n + 1000), chr(92) + ',')}}}", "thin-space-wrong"))
    elif m := _ENOT.fullmatch(ref):
        mant, exp = m[1], int(m[2])
        pos += [(f"\\boxed{{{mant} \\times 10^{{{exp}}}}}", "sci-times"), (f"\\boxed{{{mant}\\cdot10^{{{exp}}}}}", "sci-cdot")]
        neg += [(f"\\boxed{{{_other_digit(mant, rng)} \\times 10^{{{exp}}}}}", "sci-mantissa"),
                (f"\\boxed{{{mant} \\times 10^{{{exp + rng.choice([-1, 1])}}}}}", "sci-exponent")]
        if abs(float(ref)) < 1e-6:  # a tiny number is not any other tiny number
            neg.append((f"\\boxed{{{float(mant) * 1.5:.3g} \\times 10^{{{exp}}}}}", "tiny-number"))
    elif _DEC.fullmatch(ref):
        v = Fraction(ref)
        if v and abs(v) < 1:
            e = len(str(abs(v.numerator))) - len(str(v.denominator))
            pos.append((f"\\boxed{{{float(v) * 10 ** -e:g} \\times 10^{{{e}}}}}", "sci-of-decimal"))
        pos.append((f"\\boxed{{{ref}0}}", "trailing-zero"))
        neg.append((f"\\boxed{{{_other_digit(ref, rng)}}}", "decimal-digit"))
    elif m := _FRAC.fullmatch(ref):
        sign, a, b = m[1], int(m[2]), int(m[3])
        v = Fraction(int(sign + "1") * a, b)
        pos += [(f"\\boxed{{{sign}{a}/{b}}}", "slash-fraction"), (f"\\boxed{{{sign}\\dfrac{{{a}}}{{{b}}}}}", "dfrac"),
                (f"\\boxed{{{_significant(v, 6)}}}", "six-digits"),
                (f"The answer is {_significant(v, MIN_DIGITS, cut=True)}.", "digits-cut-off")]
        neg.append((f"\\boxed{{{sign}\\frac{{{a + 1}}}{{{b}}}}}", "frac-numerator"))
        if Fraction(_significant(v, 12)) != v:  # not a short decimal: 3/2 is 1.5 exactly
            six = Fraction(_significant(v, 6))
            last = Fraction(1, 10 ** -decimal.Decimal(_significant(v, 6)).as_tuple().exponent)
            neg += [(f"\\boxed{{{_significant(v, 3)}}}", "three-digits"),
                    (f"\\boxed{{{_significant(six + (last if v > 0 else -last), 6)}}}", "six-digits-off")]
        if (v * 100).denominator != 1 and abs(v) < 100:  # 1.50 is 3/2 exactly; 176.29 has 5 digits
            neg.append((f"\\boxed{{{float(v):.2f}}}", "two-decimals"))
    elif m := _BASE.fullmatch(ref):
        digits, base = m[1], int(m[2])
        pos += [(f"\\boxed{{{digits}_{{{base}}}}}", "base-braced"), (f"\\boxed{{{digits}}}", "base-digits-only")]
        neg += [(f"\\boxed{{{digits}_{{{base + 1}}}}}", "base-other-base"),
                (f"\\boxed{{{_other_digit(digits, rng)}_{base}}}", "base-digit")]
    elif m := _DEG.fullmatch(ref):
        pos += [(f"\\boxed{{{m[1]}\u00b0}}", "degree-sign"), (f"\\boxed{{{m[1]}}}", "degree-dropped"),
                (f"\\boxed{{{m[1]} \\text{{ degrees}}}}", "degree-word")]
        if (d := _other_digit(m[1], rng)) is not None:
            neg.append((f"\\boxed{{{d}\u00b0}}", "degree-digit"))
    elif m := _COMPLEX.fullmatch(ref):
        re_, op, im = m[1], m[2], m[3]
        pos += [(f"\\boxed{{{'-' if op == '-' else ''}{im}i {'-' if re_.startswith('-') else '+'} {re_.lstrip('-')}}}",
                 "complex-reordered")]
        neg.append((f"\\boxed{{{'' if op == '-' else '-'}{im}i {'-' if re_.startswith('-') else '+'} {re_.lstrip('-')}}}",
                    "complex-conjugate"))
    else:
        if (d := _other_digit(ref, rng)) is not None:
            neg.append((f"\\boxed{{{d}}}", "expr-digit"))
        if "\\frac" in ref:
            pos.append((f"\\boxed{{{ref.replace(chr(92) + 'frac', chr(92) + 'dfrac')}}}", "expr-dfrac"))
    if (u := _unbraced(ref)) != ref:
        pos.append((f"\\boxed{{{u}}}", "unbraced"))
        if (d := _other_digit(u, rng)) is not None and _bare(d) != _bare(u):
            neg.append((f"\\boxed{{{d}}}", "unbraced-digit"))
    if ref.startswith("\\$"):
        pos += [(f"\\boxed{{{ref[2:]}}}", "money-dropped"), (f"The cost is ${ref[2:]}, so \\boxed{{{ref}}}", "money-sentence")]
    pieces = _top_level_pieces(ref)
    if multi and len(set(pieces)) > 1:  # `-2,-2` has one value: `-2` is all of it
        pos.append((f"\\boxed{{{', '.join(reversed(pieces))}}}", "list-reordered"))
        neg += [(f"\\boxed{{{pieces[0]}}}", "list-first-only"), (f"\\boxed{{{pieces[-1]}}}", "list-last-only")]
        # as OlympiadBench writes several answers, bare, without the braces a model may leave out
        pos.append(("$,$".join(_unbraced(p) for p in reversed(pieces)), "list-dollars"))
        if (d := _other_digit(_unbraced(pieces[0]), rng)) is not None:
            neg.append(("$,$".join([d, *map(_unbraced, pieces[1:])]), "list-dollars-digit"))
    neg.append((f"\\boxed{{{other}}}", "other-answer"))
    out = [(p, ref, True, f) for p, f in pos] + [(p, ref, False, f) for p, f in neg if p]
    return out


def build() -> list[tuple[str, str, bool, str, str, str]]:
    """Every labelled pair: (prediction, reference, label, family, dataset, problem id)."""
    sys.path.insert(0, ".")
    from trim_rl.data.problems import BENCHMARKS, _rows, load_problems

    # OlympiadBench marks answers that are sets of solutions: only those may be reordered
    sets = {f"olympiadbench/{r['id']}" for _, r in _rows("olympiadbench_test") if r.get("is_multiple_answer")}
    rng = random.Random(20)
    out = []
    for name in BENCHMARKS:
        problems = load_problems(name)
        answers = [p.answer for p in problems]
        for i, p in enumerate(problems):
            other = next(a for a in answers[i + 1:] + answers[:i + 1] if _bare(a) != _bare(p.answer))
            multi = p.problem_id in sets
            made = pairs_for(name, p.answer, other, multi, rng)
            if name in ("gsm8k", "aime"):  # thousands of integers: one rewriting and one perturbation each
                made = [rng.choice([m for m in made if m[2] is want]) for want in (True, False)]
            out += [(pred, ref, label, family, name, p.problem_id) for pred, ref, label, family in made]
    out += _worked_solutions(_rows)
    return out


def _worked_solutions(rows) -> list[tuple[str, str, bool, str, str, str]]:
    """Human-written solutions ending in \\boxed{} (MATH-500, Minerva): each against its own
    reference (accept) and against the next problem's (reject, unless the answers coincide)."""
    from trim_rl.data.problems import load_problems

    out = []
    for name, file, key in (("math500", "math500_test", "unique_id"), ("minerva", "minerva_math_test", "idx")):
        problems = {p.problem_id: p for p in load_problems(name)}
        sols = [(f"{name}/{r[key]}", r["solution"]) for _, r in rows(file)]
        for i, (pid, sol) in enumerate(sols):
            nxt = sols[(i + 1) % len(sols)][0]
            out.append((sol, problems[pid].answer, True, "worked-solution", name, pid))
            if _bare(problems[nxt].answer) != _bare(problems[pid].answer):
                out.append((sol, problems[nxt].answer, False, "other-solution", name, nxt))
    return out


def _module(path: str):
    spec = importlib.util.spec_from_file_location(f"other_{abs(hash(path))}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _references(path: str | None) -> dict[str, str]:
    """Problem id -> reference as the given problems.py loads it (this checkout's by default)."""
    if path is None:
        from trim_rl.data.problems import BENCHMARKS, load_problems
    else:
        mod = _module(path)
        BENCHMARKS, load_problems = mod.BENCHMARKS, mod.load_problems
    return {p.problem_id: p.answer for name in BENCHMARKS for p in load_problems(name)}


def timing() -> None:
    """Milliseconds per call of this checkout's grader on each path (in-process, worker, guard)."""
    sys.path.insert(0, ".")
    from trim_rl.data.grading import judge
    from trim_rl.data.grading.pool import pool

    def per_call(p: str, r: str, n: int) -> float:
        # distinct texts each call (a trailing space), so that no parse cache answers
        t = time.perf_counter()
        for i in range(n):
            judge(p + " " * (i % 50), r)
        return 1e3 * (time.perf_counter() - t) / n

    t = time.perf_counter()
    pool().run({"pred": "1", "ref": "1", "kind": "answer"}, 60)
    print(f"worker start-up (once, outside any deadline): {time.perf_counter() - t:.2f} s")
    for name, p, r in [("plain number", "So it is \\boxed{1\\,440}.", "1440"),
                       ("e-notation", "\\boxed{3.83 \\times 10^{35}}", "3.83e35"),
                       ("symbolic, in a worker", "\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}"),
                       ("guard: power tower", "\\boxed{9^{9^{9^{9^{9}}}}}", "42"),
                       ("guard: 100,000 `(`", "\\boxed{" + "(" * 100_000 + "}", "42")]:
        print(f"{name:24} {per_call(p, r, 200):8.3f} ms/call")
    n = 200
    t = time.perf_counter()
    for _ in range(n):
        pool().run({"pred": "1", "ref": "1", "kind": "answer"}, 10)
    print(f"{'worker round trip only':24} {1e3 * (time.perf_counter() - t) / n:8.3f} ms/call")
    t = time.perf_counter()
    got = judge("\\boxed{\\prod_{k=1}^{10^{7}} k}", "5", timeout=10.0)
    print(f"unrefused slow comparison, 10 s deadline: {got} after {time.perf_counter() - t:.2f} s")


def measure(pairs, grade, refs: dict[str, str] | None = None) -> dict:
    """Agreement of ``grade(prediction, reference)`` with the labels: counts overall, per dataset and
    per family (``+ name`` accepted rewritings, ``- name`` rejected perturbations), the false
    positives (rejected pairs it accepts) and the disagreeing pairs."""
    by_family: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    by_data: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    wrong = []
    t0 = time.perf_counter()
    for pred, ref, label, family, dataset, pid in pairs:
        ref = ref if refs is None else refs[pid]
        ok = bool(grade(pred, ref)) == label
        for d, k in ((by_family, f"{'+' if label else '-'} {family}"), (by_data, dataset)):
            d[k][0] += ok
            d[k][1] += 1
        if not ok:
            wrong.append((pred, ref, label, family))
    negatives = sum(not p[2] for p in pairs)
    return {"n": len(pairs), "agree": len(pairs) - len(wrong), "negatives": negatives,
            "false_positives": sum(not w[2] for w in wrong), "by_family": by_family, "by_data": by_data,
            "wrong": wrong, "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grader", help="a Python file defining grade(prediction, reference)")
    ap.add_argument("--problems", help="a problems.py whose loaders give the references graded against")
    ap.add_argument("--show", type=int, default=0, help="print N disagreements per family")
    ap.add_argument("--timing", action="store_true", help="measure the cost per call instead")
    args = ap.parse_args()
    if args.timing:
        timing()
        return
    pairs = build()
    refs = _references(args.problems)
    if args.grader is None:
        from trim_rl.data.grading import grade
    else:
        grade = _module(args.grader).grade
    got = measure(pairs, grade, refs)
    shown: collections.Counter = collections.Counter()
    for pred, ref, label, family in got["wrong"]:
        if shown[family] < args.show:
            shown[family] += 1
            print(f"  DISAGREE {family}: {pred!r} vs {ref!r} (label {label})")
    n, agree, fp, neg = got["n"], got["agree"], got["false_positives"], got["negatives"]
    print(f"{agree}/{n} agree ({100 * agree / n:.2f}%), {1e3 * got['wall_s'] / n:.2f} ms/pair")
    print(f"false positives: {fp}/{neg} rejected pairs accepted ({100 * fp / neg:.2f}%; {100 * fp / n:.2f}% of all pairs)")
    for title, d in (("by dataset", got["by_data"]), ("by family", got["by_family"])):
        print(title)
        for k, (a, m) in sorted(d.items()):
            print(f"  {k:28} {a:5}/{m:<5} {100 * a / m:6.1f}%")


if __name__ == "__main__":
    main()
