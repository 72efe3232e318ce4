r"""Labelled (prediction, reference) pairs built from the shipped benchmarks, a grader's agreement
with them, and what grading costs per call.

Not a test: it measures. Each reference yields rewritings that must be accepted (a solution
sentence around ``\boxed{}``, thousands separators and thin spaces, money and unit words, degree
signs, e-notation, fractions as decimals, base subscripts, answer lists reordered) and perturbations
that must be rejected (another number, a changed digit or mantissa, another base, part of a list,
another problem's answer). The labels come from how each pair is made, not from any grader.

    .venv/bin/python tests/data/grading_agreement.py                 # this checkout's grader
    .venv/bin/python tests/data/grading_agreement.py --grader FILE --problems FILE2
        # another grade(), given the references of another problems.py (e.g. both from main)
    .venv/bin/python tests/data/grading_agreement.py --timing        # cost per call, per path
"""

from __future__ import annotations

import argparse
import collections
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


def _bare(answer: str) -> str:
    # `x=5`, `05` and `5` name the same answer: another problem's answer must differ from it
    s = re.sub(r"^[a-z]\s*=\s*|\s+", "", answer)
    return str(int(s)) if _INT.fullmatch(s) else s


def pairs_for(dataset: str, ref: str, other: str, multi: bool, rng: random.Random) -> list[tuple[str, str, bool, str]]:
    """(prediction, reference, label, family) pairs for one reference."""
    pos: list[tuple[str, str]] = [(f"So the final answer is $\\boxed{{{ref}}}$.", "sentence")]
    neg: list[tuple[str, str]] = []
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
        neg.append((f"\\boxed{{{n + rng.choice([-1, 1])}}}", "int-off-by-one"))
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
                (f"\\boxed{{{float(v):.6f}}}", "six-decimals")]
        neg.append((f"\\boxed{{{sign}\\frac{{{a + 1}}}{{{b}}}}}", "frac-numerator"))
        if (v * 100).denominator != 1:  # 1.50 is 3/2 exactly
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
    else:
        if (d := _other_digit(ref, rng)) is not None:
            neg.append((f"\\boxed{{{d}}}", "expr-digit"))
        if "\\frac" in ref:
            pos.append((f"\\boxed{{{ref.replace(chr(92) + 'frac', chr(92) + 'dfrac')}}}", "expr-dfrac"))
    if ref.startswith("\\$"):
        pos += [(f"\\boxed{{{ref[2:]}}}", "money-dropped"), (f"The cost is ${ref[2:]}, so \\boxed{{{ref}}}", "money-sentence")]
    pieces = _top_level_pieces(ref)
    if multi and len(pieces) > 1:
        pos.append((f"\\boxed{{{', '.join(reversed(pieces))}}}", "list-reordered"))
        neg += [(f"\\boxed{{{pieces[0]}}}", "list-first-only"), (f"\\boxed{{{pieces[-1]}}}", "list-last-only")]
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
    by_family: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    by_data: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    shown: collections.Counter = collections.Counter()
    t0 = time.perf_counter()
    for pred, _ref, label, family, dataset, pid in pairs:
        ok = bool(grade(pred, refs[pid])) == label
        for d, k in ((by_family, f"{'+' if label else '-'} {family}"), (by_data, dataset)):
            d[k][0] += ok
            d[k][1] += 1
        if not ok and shown[family] < args.show:
            shown[family] += 1
            print(f"  DISAGREE {family}: {pred!r} vs {refs[pid]!r} (label {label})")
    wall = time.perf_counter() - t0
    agree = sum(v[0] for v in by_data.values())
    print(f"{agree}/{len(pairs)} agree ({100 * agree / len(pairs):.2f}%), {1e3 * wall / len(pairs):.2f} ms/pair")
    for title, d in (("by dataset", by_data), ("by family", by_family)):
        print(title)
        for k, (a, n) in sorted(d.items()):
            print(f"  {k:28} {a:5}/{n:<5} {100 * a / n:6.1f}%")


if __name__ == "__main__":
    main()
