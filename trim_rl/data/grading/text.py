r"""Answer strings before any parsing: money, spacing, e-notation, degrees and units normalised.

Pure string work (no sympy), so it is cheap and cannot hang: every pattern is linear in the input.
"""

from __future__ import annotations

import re

_UNICODE = str.maketrans({
    "\u2212": "-", "\u2013": "-", "\u00d7": r"\times ", "\u22c5": r"\cdot ", "\u00b7": r"\cdot ",
    "\u00b0": r"^{\circ}", "\u2009": r"\,", "\u202f": r"\,", "\u00a0": " ", "\u2061": "",
})
# a group separator between digits: thin spaces, `{,}` and MATH's `,\!` (a comma with a negative space)
_SEP = r"(?:\\[,;:! ]|\\thinspace|\{,\}|,\s*\\!\s*|\\!\s*,|,\{\})"
_THOUSANDS = re.compile(rf"(?<=\d){_SEP}(?=\d{{3}}(?!\d))")
_SPACES = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad\b|\\thinspace\b|~")  # not a `\\` row break
# 3.83e35, 1E-7, 2.5e+3, written compactly: not `2e` (2 times e) nor `3e - 1`, nor part of a word
_E_NOTATION = re.compile(r"(?<![\w.\\])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d+)(?![\w.])")
_DOLLARS_LIST = re.compile(r"\$\s*([,;])\s*\$")  # OlympiadBench's `a$,$b`
_TRAILING = re.compile(r"[\s.,;:]+$")


def _unwrap_dollars(s: str) -> str:
    # `$x$` / `$$x$$` around a whole answer are delimiters; any other `$` is money or a stray sign.
    for d in ("$$", "$"):
        if len(s) > 2 * len(d) and s.startswith(d) and s.endswith(d) and "$" not in s[len(d):-len(d)]:
            return s[len(d):-len(d)]
    return s


def clean(answer: str) -> str:
    r"""A final answer (a ``\boxed{}`` content or a bare answer) with notation normalised.

    ``\$`` and money ``$`` go; thin-space and ``,\!`` thousands separators join their digits
    (``1\,000`` is 1000, not 1*0); other LaTeX spacing becomes a space; e-notation becomes
    ``\times 10^{k}``; ``°`` becomes ``^{\circ}``; a trailing full stop goes.
    """
    s = answer.translate(_UNICODE).replace("\\$", "").strip()
    s = _DOLLARS_LIST.sub(r"\1 ", _unwrap_dollars(s)).replace("$", "")
    s = _THOUSANDS.sub("", s)
    s = _SPACES.sub(" ", s)
    s = _E_NOTATION.sub(lambda m: f"{m[1]}\\times 10^{{{int(m[2])}}}", s)
    return _TRAILING.sub("", s).strip()


def canonical(s: str) -> str:
    """The text with whitespace and ``\\left``/``\\right`` removed: two answers equal here are equal."""
    return re.sub(r"\s+|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])", "", s)


# -- units ----------------------------------------------------------------------------------------

# Unit words dropped wherever they are (both sides). Single letters are not here: `3 n` and
# `\frac{37}{4} m` are answers in terms of a variable, so a letter is a unit only in a prediction
# whose reference is a plain number.
_UNIT_WORDS = (
    "dollars?|cents?|euros?|pounds?|yen|rupees?|"
    "mm|cm|km|meters?|metres?|kilometers?|kilometres?|centimeters?|centimetres?|millimeters?|"
    "inch|inches|in|feet|foot|ft|yards?|yds?|miles?|mi|"
    "mg|kg|grams?|kilograms?|lbs?|ounces?|oz|tons?|"
    "ml|mL|liters?|litres?|gallons?|gal|cups?|"
    "sec|secs|seconds?|mins?|minutes?|hrs?|hours?|days?|weeks?|months?|years?|yrs?|"
    "mph|kph|km/h|m/s|km/hr|"
    "degrees?|deg|radians?|rad|units?|sq|square|cubic"
)
_UNIT_LETTERS = "m|g|s|h|L|l|K|J|N|W|V|A|Hz|eV|Pa"
_POWER = r"(?:\s*\^\s*(?:\{\s*-?\d\s*\}|-?\d))?"
_TEXT = r"\\(?:text|textrm|mbox|mathrm|rm|textnormal)\s*\{(?!\s*[eid]\s*\})[^{}]*\}"  # not e, i, d
_DEGREE = r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree"
_MARKED = re.compile(rf"(?<=[\d}}])\s*(?:(?:{_TEXT}){_POWER}|{_DEGREE})\s*$")
_WORD_UNIT = re.compile(rf"(?<=[\d}}])\s*(?<!\\)(?:(?:{_UNIT_WORDS})(?:\s+(?:{_UNIT_WORDS}))?){_POWER}\s*$")
_ANY_WORD = re.compile(rf"(?<=[\d}}])\s*(?<![\\a-zA-Z])(?:[a-zA-Z]{{3,}}(?:\s+[a-zA-Z]{{3,}}){{0,3}}|{_UNIT_LETTERS}){_POWER}\s*$")


def strip_units(s: str, loose: bool = False) -> str:
    r"""``s`` without a trailing unit: ``\text{...}``, ``^\circ`` or a unit word (``36 dollars``).

    ``loose`` (for a prediction whose reference is a plain number) also drops any trailing words
    and single unit letters (``6m``, ``12 apples``).
    """
    for _ in range(2):  # `5 \text{ cm}^2`, then `^{\circ}` after a `\text{}`
        t = _MARKED.sub("", s)
        t = _WORD_UNIT.sub("", t)
        if loose:
            t = _ANY_WORD.sub("", t)
        if t == s or not t.strip():
            break
        s = t.strip()
    return s.strip()
