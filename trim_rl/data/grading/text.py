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
DOLLARS_LIST = re.compile(r"\$\s*([,;])\s*\$")  # OlympiadBench's `a$,$b`
_TRAILING = re.compile(r"[\s.,;:]+$")
# `\frac12`, `\dfrac\pi2`, `\sqrt2`, `\sqrt[3]2`: a one-token argument that math-verify reads but a text
# comparison (and the quick number path) would not match with the braced form
_ONE_TOKEN_CMD = re.compile(r"\\(?:[dtc]?frac|sqrt)(?![a-zA-Z])")
_ARG_TOKEN = re.compile(r"\s*(\\[a-zA-Z]+|[0-9a-zA-Z])")
_ROOT_INDEX = re.compile(r"\s*\[[^\[\]{}]*\]")
_BRACE_SCAN_MAX = 2000  # longer answers are compared as text only (guard.MAX_CHARS): not worth a scan


def _unwrap_dollars(s: str) -> str:
    # `$x$` / `$$x$$` around a whole answer are delimiters; any other `$` is money or a stray sign.
    for d in ("$$", "$"):
        if len(s) > 2 * len(d) and s.startswith(d) and s.endswith(d) and "$" not in s[len(d):-len(d)]:
            return s[len(d):-len(d)]
    return s


def _group_end(s: str, i: int) -> int:
    """The index after the ``}`` closing the ``{`` at ``s[i]``, or -1."""
    depth = 0
    for j in range(i, len(s)):
        depth += (s[j] == "{") - (s[j] == "}")
        if depth == 0:
            return j + 1
    return -1


def brace_arguments(s: str) -> str:
    r"""``\frac12`` as ``\frac{1}{2}``, ``\sqrt2`` as ``\sqrt{2}``, ``\dfrac\pi2`` as ``\dfrac{\pi}{2}``:
    every one-token argument of ``\frac`` and ``\sqrt`` gets its braces."""
    if len(s) > _BRACE_SCAN_MAX or "\\" not in s:
        return s
    inserts: list[tuple[int, str]] = []
    for m in _ONE_TOKEN_CMD.finditer(s):
        i = m.end()
        if m[0] == "\\sqrt" and (r := _ROOT_INDEX.match(s, i)):
            i = r.end()
        mine: list[tuple[int, str]] = []
        for _ in range(2 if m[0].endswith("frac") else 1):
            j = i + len(s[i:]) - len(s[i:].lstrip())
            if s[j:j + 1] == "{":
                i = _group_end(s, j)
            elif (t := _ARG_TOKEN.match(s, i)) and not _ONE_TOKEN_CMD.fullmatch(t[1]):
                mine += [(t.start(1), "{"), (t.end(1), "}")]
                i = t.end()
            else:
                i = -1
            if i < 0:
                break
        else:  # every argument found: a command cut short stays as it is
            inserts += mine
    # right to left; where a `}` and a `{` fall on one index (`\frac12`), the `}` must end up first
    for pos, text in sorted(inserts, key=lambda x: (x[0], x[1] == "{"), reverse=True):
        s = s[:pos] + text + s[pos:]
    return s


def clean(answer: str) -> str:
    r"""A final answer (a ``\boxed{}`` content or a bare answer) with notation normalised.

    ``\$`` and money ``$`` go; thin-space and ``,\!`` thousands separators join their digits
    (``1\,000`` is 1000, not 1*0); other LaTeX spacing becomes a space; e-notation becomes
    ``\times 10^{k}``; ``°`` becomes ``^{\circ}``; ``\frac12`` and ``\sqrt2`` get their braces; a
    trailing full stop goes.
    """
    s = answer.translate(_UNICODE).replace("\\$", "").strip()
    s = DOLLARS_LIST.sub(r"\1 ", _unwrap_dollars(s)).replace("$", "")
    s = _THOUSANDS.sub("", s)
    s = _SPACES.sub(" ", s)
    s = _E_NOTATION.sub(lambda m: f"{m[1]}\\times 10^{{{int(m[2])}}}", s)
    return brace_arguments(_TRAILING.sub("", s).strip())


# -- an answer stated in words ---------------------------------------------------------------------

_HASHES = re.compile(r"####[ \t]*([^\n]*)")  # GSM8K's final line, `#### 18`
# ... and not a Markdown heading: `#### Step 2`, `#### 1. Setup`, `#### **Solution**`
_HEADING = re.compile(r"[*_ \t]*(?:[a-zA-Z]|\d+[.)][ \t]+[a-zA-Z])")
# "The answer is", "the final answer is:", "Answer:", "**Answer:**", "the answers are"
_STATED = re.compile(r"(?i)\b(?:answer[ \t]*(?:\*\*)?[ \t]*(?:is\b|:|=)|answers[ \t]+are\b)\s*:?\s*(?:\*\*\s*)?")
_FORMULA = {"$$": re.compile(r"(?<!\\)\$\$"), "$": re.compile(r"(?<!\\)\$"), "\\(": re.compile(r"\\\)"), "\\[": re.compile(r"\\\]")}
_NEXT_FORMULA = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|and\s+|or\s+)\$((?:[^$\\]|\\.)+)\$")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n")  # not the point of 3.5
_STATED_MAX = 300  # a longer "answer" is prose: leave the solution to math-verify


def stated_answer(solution: str) -> str | None:
    r"""The final answer a solution gives without ``\boxed``, or None: after its last ``####``
    (GSM8K; not a Markdown heading) or its last "the answer is" / "Answer:", whichever comes
    later. Read up to the end of that sentence, or as the formula (``$...$``, ``\(...\)``) that
    follows the phrase."""
    hashes = None
    for m in _HASHES.finditer(solution):
        if not _HEADING.match(m[1]):
            hashes = m
    stated = None
    for m in _STATED.finditer(solution):
        stated = m
    if hashes is not None and (stated is None or hashes.start() > stated.start()):
        got = hashes[1]
    elif stated is not None:
        rest = solution[stated.end():]
        opener = next((o for o in _FORMULA if rest.startswith(o)), None)
        close = _FORMULA[opener].search(rest, len(opener)) if opener else None
        if close is not None:  # else a `$` of money (`$18.90.`): read the sentence
            got = rest[len(opener):close.start()]
            # "the answers are $3$, $4$ and $5$": every formula of the list
            while opener == "$" and (more := _NEXT_FORMULA.match(rest, close.end())):
                got, close = f"{got}, {more[1]}", more
        else:
            end = _SENTENCE_END.search(rest)
            got = rest[:end.start()] if end else rest
    else:
        return None
    got = got.strip().strip("*").strip()
    return got if got and len(got) <= _STATED_MAX else None


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
