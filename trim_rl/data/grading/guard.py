r"""A cheap look at an answer before anything parses it: refuse what would blow up sympy.

sympy evaluates integer powers and factorials of literals as it builds them, so an answer such as
``9^{9^{9}}`` (a 369-million-digit number) costs minutes of CPU with the GIL held. Such answers,
answers longer than :data:`MAX_CHARS` and answers nested deeper than :data:`MAX_DEPTH` are not
parsed at all; the caller compares them as text.
"""

from __future__ import annotations

import math
import re

MAX_CHARS = 2000
MAX_DEPTH = 50
# Python's own limit on int <-> str conversion: a literal beyond it cannot even be printed.
MAX_DIGITS = 4300

_TOKEN = re.compile(r"\d+(?:\.\d+)?|\\(?:cdot|times)(?![a-zA-Z])|\\[a-zA-Z]+|[-+*^!{}()\[\]]|\s+|.", re.S)
# tuples, not strings: `None in "})]"` raises where the answer ends inside a bracket
_OPEN, _CLOSE = ("{", "(", "["), ("}", ")", "]")


class _TooBig(Exception):
    pass


def _depth(s: str) -> int:
    depth = best = 0
    for ch in s:
        if ch in _OPEN:
            depth += 1
            best = max(best, depth)
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
    return best


def _size(literal: str) -> float:
    # log10 of max(|x|, 1/|x|): 0.5^n is as large as 2^n once sympy makes it a rational
    if len(literal) > 300:
        return float(len(literal.split(".")[0]))
    x = float(literal)
    return abs(math.log10(x)) if x > 0 else 0.0


class _Magnitude:
    """Recursive descent over the answer's tokens; a value is log10 of an upper bound of a literal
    (None for anything symbolic). Raises _TooBig as soon as a literal passes MAX_DIGITS."""

    def __init__(self, s: str):
        self.toks = [t for t in _TOKEN.findall(s) if not t.isspace()]
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def check(self, v: float | None) -> float | None:
        if v is not None and v > MAX_DIGITS:
            raise _TooBig
        return v

    def run(self) -> None:
        while self.peek() is not None:
            self.expr()
            if self.peek() is not None:
                self.i += 1  # a stray closer or separator: skip it, keep checking the rest

    def expr(self) -> float | None:
        v = self.term()
        while self.peek() in ("+", "-"):
            self.i += 1
            w = self.term()
            v = None if v is None or w is None else max(v, w) + math.log10(2)
        return self.check(v)

    def term(self) -> float | None:
        v = self.power()
        while (t := self.peek()) is not None and t not in ("+", "-", *_CLOSE, ",", ";", "=", "&"):
            if t in ("*", "\\cdot", "\\times"):
                self.i += 1
            w = self.power()  # juxtaposition multiplies too
            v = None if v is None or w is None else self.check(v + w)
        return v

    def power(self) -> float | None:
        base = self.postfix()
        if self.peek() != "^":
            return base
        self.i += 1
        exp = self.power()
        if base is None or exp is None:
            return None
        if base == 0:  # 0 or 1 to any power
            return 0.0
        if exp > 300:  # the exponent alone has more than 300 digits
            raise _TooBig
        return self.check(base * 10**exp)

    def postfix(self) -> float | None:
        v = self.atom()
        while self.peek() == "!":
            self.i += 1
            if v is not None:
                n = 10**v if v < 300 else math.inf
                v = self.check(n * math.log10(max(n, 2)))
        return v

    def atom(self) -> float | None:
        t = self.peek()
        if t is None:
            return None
        self.i += 1
        if t in _OPEN:
            v = self.expr()
            if self.peek() in _CLOSE:
                self.i += 1
            return v
        if t == "-":
            return self.power()
        if t[0].isdigit():
            return _size(t)
        if t in ("\\binom", "\\dbinom", "\\tbinom"):  # C(n, k) < min(n^k, 2^n)
            n, k = self.atom(), self.atom()
            if n is None or k is None:
                return None
            return self.check(min(10 ** min(k, 300) * n, 10 ** min(n, 300) * math.log10(2)))
        return None  # a letter, a command, a closer: symbolic


def refuse(answer: str) -> str | None:
    """Why ``answer`` must not be parsed (too long, too deep, a literal too large), or None."""
    if len(answer) > MAX_CHARS:
        return f"longer than {MAX_CHARS} characters"
    if _depth(answer) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH}"
    try:
        _Magnitude(answer).run()
    except _TooBig:
        return f"a number with more than {MAX_DIGITS} digits"
    except RecursionError:  # thousands of chained `^` or signs
        return "nested too deep"
    return None
