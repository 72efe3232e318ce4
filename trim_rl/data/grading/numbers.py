r"""Plain numbers compared exactly in Python: the fast path of grading, no sympy involved.

A plain number is an integer, a decimal, a fraction (``\frac{a}{b}``, ``a/b``), scientific notation
(``3.83\times 10^{35}``; ``clean`` has already rewritten ``3.83e35``) or a percentage, with an
optional sign and unit. Anything else is left to the symbolic comparison.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fractions import Fraction

from trim_rl.data.grading.text import strip_units

# A decimal against an exact reference (1/3, 736): the decimal policy of docs/grading.md. It must be
# the reference rounded or cut off to the decimals written, with at least MIN_DIGITS significant
# digits: 0.053571 = 3/56, but 0.0536 (3 digits) is an approximation, not the answer.
MIN_DIGITS = 5
# Against a decimal reference (Minerva's 0.0536, 3.89e-10) the reference's own rounding is unknown:
# within both an absolute 1e-6 (math-verify's rounding to 6 places) and a relative 1e-4 (so that
# 5e-10 is not 3.89e-10, as rounding alone would say).
ABS_TOL = Fraction(1, 10**6)
REL_TOL = Fraction(1, 10**4)
MAX_EXPONENT = 400  # 10^k beyond this is left to the guarded symbolic path, not built here

_INT = r"\d{1,3}(?:,\d{3})+|\d+"
_DEC = rf"(?:{_INT})(?:\.\d*)?|\.\d+"
_ARG = r"\{\s*(-?\d+)\s*\}|(\d)"  # \frac{12}{5} or \frac12
_FRAC = re.compile(rf"\\[dtc]?frac\s*(?:{_ARG})\s*(?:{_ARG})")
_SLASH = re.compile(r"(\d+)\s*/\s*(\d+)")
_SCI = re.compile(rf"(?:(?P<m>{_DEC})\s*(?:\\times|\\cdot|\*|x)\s*)?10\s*\^\s*(?:\{{\s*(?P<e>[+-]?\d+)\s*\}}|(?P<e1>-?\d))")
_PCT = re.compile(r"\s*(?:\\?%|\\text\s*\{\s*(?:\\?%|percent)\s*\}|percent|pct)\s*$")
_BASE = re.compile(r"\(?\s*(?:\\text\s*\{\s*)?([0-9A-Z]+)(?:\s*\})?\s*\)?\s*_\s*(?:\{\s*(\d+)\s*\}|(\d))")


@dataclass(frozen=True)
class Num:
    """A parsed plain number: its exact value, whether it was written as a decimal, as a percent;
    for a decimal, the places written (its last digit is worth 10^-places) and its significant digits."""

    value: Fraction
    decimal: bool = False
    percent: bool = False
    places: int = 0
    digits: int = 0


def _written(literal: str, exponent: int = 0) -> dict:
    # `0.053571`: 6 places, 5 significant digits; `6.6667 \times 10^{4}`: 0 places, 5 digits
    whole, _, frac = literal.replace(",", "").partition(".")
    return {"decimal": True, "places": len(frac) - exponent, "digits": len((whole + frac).lstrip("0"))}


def _unsigned(s: str) -> tuple[Fraction, dict] | None:
    if re.fullmatch(_DEC, s):
        return Fraction(s.replace(",", "")), (_written(s) if "." in s else {})
    if m := _FRAC.fullmatch(s):
        num, den = int(m[1] or m[2]), int(m[3] or m[4])
        return (Fraction(num, den), {}) if den else None
    if m := _SLASH.fullmatch(s):
        return (Fraction(int(m[1]), int(m[2])), {}) if int(m[2]) else None
    if m := _SCI.fullmatch(s):
        e = int(m["e"] if m["e"] is not None else m["e1"])
        if abs(e) > MAX_EXPONENT:
            return None
        mant = Fraction(m["m"].replace(",", "")) if m["m"] else Fraction(1)
        return mant * Fraction(10) ** e, (_written(m["m"], e) if m["m"] is not None and "." in m["m"] else {})
    return None


def parse_number(s: str, loose_units: bool = False) -> Num | None:
    """``s`` as a plain number, or None; a trailing unit is dropped (see ``strip_units``)."""
    percent = bool(_PCT.search(s))  # before the units: `percent` is a word too
    s = strip_units(_PCT.sub("", s), loose=loose_units)
    s = re.sub(r"^\{\s*(.*?)\s*\}$", r"\1", s)  # a braced group `{5}`
    sign = 1
    if s[:1] in ("+", "-"):
        sign, s = (-1 if s[0] == "-" else 1), s[1:].strip()
    got = _unsigned(s)
    if got is None:
        return None
    return Num(sign * got[0], percent=percent, **got[1])


def rounds_to(decimal: Fraction, places: int, digits: int, exact: Fraction) -> bool:
    """The decimal policy: ``decimal`` (written with ``places`` decimals and ``digits`` significant
    digits) is ``exact`` rounded or cut off to those decimals, and has at least MIN_DIGITS digits."""
    if digits < MIN_DIGITS:
        return False
    unit, gap = Fraction(10) ** -places, abs(exact - decimal)
    if abs(decimal) < abs(exact) and (decimal >= 0) == (exact >= 0):
        return gap < unit  # cut off (or rounded down)
    return 2 * gap <= unit  # rounded away from zero


def numbers_equal(pred: Num, ref: Num) -> bool:
    """Exact equality; a decimal prediction of an exact reference under the decimal policy
    (:func:`rounds_to`); within the tolerances against a decimal reference. A percentage matches
    its value or its value / 100 (``50\\%`` is 50 and 0.5)."""
    def close(a: Fraction, shift: int, b: Fraction) -> bool:
        if a == b:
            return True
        if pred.decimal and not ref.decimal:
            return rounds_to(a, pred.places + shift, pred.digits, b)
        d = abs(a - b)
        return (pred.decimal or ref.decimal) and d <= ABS_TOL and d <= REL_TOL * max(abs(a), abs(b))

    # a percentage divided by 100 has two more places: 33.333% is 0.33333
    preds = [(pred.value, 0), (pred.value / 100, 2)] if pred.percent else [(pred.value, 0)]
    refs = [ref.value, ref.value / 100] if ref.percent else [ref.value]
    return any(close(p, shift, r) for p, shift in preds for r in refs)


# -- complex numbers ------------------------------------------------------------------------------

_IMAGINARY = re.compile(r"(.*?)\s*(?:\\cdot|\\times)?\s*(?<![a-zA-Z\\])(?:i|\{i\}|\\mathrm\s*\{i\}|\\text\s*\{i\})")


def _terms(s: str) -> list[str] | None:
    # split at the `+` and `-` outside brackets that are not an exponent's sign (10^-5)
    out, depth, start = [], 0, 0
    for j, ch in enumerate(s):
        depth += (ch in "{([") - (ch in "})]")
        if ch in "+-" and depth == 0 and j > start and s[:j].rstrip()[-1:] not in ("^", "e", "E", ""):
            out.append(s[start:j])
            start = j
    out.append(s[start:])
    return [t.strip() for t in out] if depth == 0 else None


def parse_complex(s: str) -> tuple[Num, Num] | None:
    r"""``a + bi`` with plain-number parts, in either order (``2i + 1``, ``-3i+4``, ``\frac12 - i``),
    as (real, imaginary); None for anything else, and for a number with no ``i`` term."""
    if "i" not in s or len(s) > 200:
        return None
    parts: dict[str, Num] = {}
    for term in _terms(s) or []:
        sign, body = ("-" if term[:1] == "-" else ""), term.lstrip("+-").strip()
        if m := _IMAGINARY.fullmatch(body):
            key, coef = "im", m[1].strip()
            num = Num(Fraction(1)) if coef in ("", "+") else parse_number(coef)
        else:
            key, num = "re", parse_number(body)
        if num is None or num.percent or key in parts or not body:
            return None
        parts[key] = replace(num, value=-num.value) if sign else num
    if "im" not in parts:
        return None
    return parts.get("re", Num(Fraction(0))), parts["im"]


def complex_equal(pred: tuple[Num, Num], ref: tuple[Num, Num]) -> bool:
    """Both parts equal, each as :func:`numbers_equal` decides."""
    return numbers_equal(pred[0], ref[0]) and numbers_equal(pred[1], ref[1])


def base_numeral(s: str) -> tuple[str, int] | None:
    r"""``52_8`` / ``(52)_{8}`` / ``\text{A4}_{11}`` as (digits, base), or None (also when the
    digits are not digits of the base, as in ``x_2`` or ``19_8``)."""
    m = _BASE.fullmatch(s.strip())
    if not m:
        return None
    digits, base = m[1], int(m[2] or m[3])
    if not 2 <= base <= 36:
        return None
    try:
        int(digits, base)
    except ValueError:
        return None
    return digits.lstrip("0") or "0", base
