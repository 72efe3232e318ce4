r"""Plain numbers compared exactly in Python: the fast path of grading, no sympy involved.

A plain number is an integer, a decimal, a fraction (``\frac{a}{b}``, ``a/b``), scientific notation
(``3.83\times 10^{35}``; ``clean`` has already rewritten ``3.83e35``) or a percentage, with an
optional sign and unit. Anything else is left to the symbolic comparison.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from trim_rl.data.grading.text import strip_units

# Decimals are compared within both an absolute 1e-6 (math-verify's rounding to 6 places, so that
# 0.333333 = 1/3) and a relative 1e-4 (so that 5e-10 is not 3.89e-10, as rounding alone would say).
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
    """A parsed plain number: its exact value, whether it was written as a decimal, as a percent."""

    value: Fraction
    decimal: bool = False
    percent: bool = False


def _unsigned(s: str) -> tuple[Fraction, bool] | None:
    if re.fullmatch(_DEC, s):
        return Fraction(s.replace(",", "")), "." in s
    if m := _FRAC.fullmatch(s):
        num, den = int(m[1] or m[2]), int(m[3] or m[4])
        return (Fraction(num, den), False) if den else None
    if m := _SLASH.fullmatch(s):
        return (Fraction(int(m[1]), int(m[2])), False) if int(m[2]) else None
    if m := _SCI.fullmatch(s):
        e = int(m["e"] if m["e"] is not None else m["e1"])
        if abs(e) > MAX_EXPONENT:
            return None
        mant = Fraction(m["m"].replace(",", "")) if m["m"] else Fraction(1)
        return mant * Fraction(10) ** e, m["m"] is not None and "." in m["m"]
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
    return Num(sign * got[0], got[1], percent)


def numbers_equal(pred: Num, ref: Num) -> bool:
    """Exact equality, or within the decimal tolerances when either side is written as a decimal;
    a percentage matches its value or its value / 100 (``50\\%`` is 50 and 0.5)."""
    def close(a: Fraction, b: Fraction, approx: bool) -> bool:
        if a == b:
            return True
        d = abs(a - b)
        return approx and d <= ABS_TOL and d <= REL_TOL * max(abs(a), abs(b))

    approx = pred.decimal or ref.decimal
    preds = [pred.value, pred.value / 100] if pred.percent else [pred.value]
    refs = [ref.value, ref.value / 100] if ref.percent else [ref.value]
    return any(close(p, r, approx) for p in preds for r in refs)


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
