r"""Answer grading: is a model's final answer equivalent to the reference? (docs/grading.md)

Three stages, cheapest first. The final answer (the last ``\boxed{}``, or a bare answer) and the
reference are cleaned as text (:mod:`.text`). An answer too long, too deeply nested or holding a
literal too large for sympy is compared as text only (:mod:`.guard`). Plain numbers, base-``b``
numerals and identical texts are decided in this process, in microseconds (:mod:`.numbers`).
Everything else goes to math-verify in a worker process under a deadline (:mod:`.pool`), so no
grading call can hang or freeze its caller, on the main thread or any other.
"""

from __future__ import annotations

import enum
import logging
import re

from trim_rl.data.grading.guard import MAX_CHARS, refuse
from trim_rl.data.grading.numbers import base_numeral, complex_equal, numbers_equal, parse_complex, parse_number
from trim_rl.data.grading.pool import pool as _grading_pool  # not `pool`: that name is the submodule
from trim_rl.data.grading.text import DOLLARS_LIST, canonical, clean, stated_answer, strip_units
from trim_rl.data.problems import last_boxed

DEFAULT_TIMEOUT_S = 10.0
_MONEY = re.compile(r"\s*-?\s*\$\s*-?[\d.,]+\s*")
# math-verify drops a trailing `m`, `t`, `g`... as a unit; still here, such a letter is a variable
_LAST_LETTER = re.compile(r"(?<=[\d}\s])([a-zA-Z])\s*$")
_log = logging.getLogger(__name__)


class Verdict(str, enum.Enum):
    """A grade: ``correct``, ``incorrect`` or ``timeout`` (the comparison missed its deadline).

    True only when correct, so ``if judge(...)`` reads as before; a ``str``, so it is written to
    JSON as its name.
    """

    CORRECT = "correct"
    INCORRECT = "incorrect"
    TIMEOUT = "timeout"

    def __bool__(self) -> bool:
        return self is Verdict.CORRECT

    def __str__(self) -> str:
        return self.value


def extract_answer(solution: str) -> str | None:
    r"""The final answer of a solution: its last ``\boxed{...}``, or None when there is none."""
    return last_boxed(solution)


def _prediction(prediction: str) -> tuple[str, str]:
    r"""(cleaned answer, "answer") for a boxed, stated ("the answer is ...", ``#### ...``) or bare
    answer; (solution tail, "text") for any other solution, whose answer math-verify has to find."""
    boxed = last_boxed(prediction)
    if boxed is not None:
        return clean(boxed), "answer"
    stated = stated_answer(prediction)  # "The answer is 736.", "#### 18"
    if stated is not None:
        return clean(stated), "answer"
    p = prediction.strip()
    t = p.replace("\\$", "")
    u = DOLLARS_LIST.sub(",", t)  # `a$,$b` is one list of formulas, not prose between them
    bare = "$" not in u or (u.startswith("$") and u.endswith("$") and u.count("$") in (2, 4)) or _MONEY.fullmatch(t)
    if bare and "\n" not in p and len(p) <= MAX_CHARS:
        return clean(p), "answer"
    tail = t[-MAX_CHARS:]
    if t[:-MAX_CHARS].count("$") % 2:  # the cut fell inside a formula: start after it
        tail = tail[tail.find("$") + 1:]
    return tail, "text"


def _quick(pred: str, ref: str) -> Verdict | None:
    """The verdict when it needs no symbolic work (same text, plain numbers, base-b numerals,
    complex numbers a + bi)."""
    if canonical(pred) == canonical(ref):
        return Verdict.CORRECT
    rb, pb = base_numeral(ref), base_numeral(pred)
    if rb is not None and rb[1] != 10:
        # a base-b reference: the same digits, with the same subscript or none (52_9 is not 52_8)
        if pb is None and re.fullmatch(r"[0-9A-Z]+", pred):
            pb = (pred.lstrip("0") or "0", rb[1])
        return Verdict.CORRECT if pb == rb else Verdict.INCORRECT
    if pb is not None:  # a base-b prediction of a plain reference: its value
        pred = str(int(pb[0], pb[1]))
    r = parse_number(ref)
    p = parse_number(pred, loose_units=True) if r is not None else None
    if r is not None and p is not None:
        return Verdict.CORRECT if numbers_equal(p, r) else Verdict.INCORRECT
    # math-verify reads `i` as a plain symbol, real in `1+2i` but not in `2i+1`: compare a + bi here
    rc = parse_complex(ref) if r is None else None
    pc = parse_complex(pred) if rc is not None else None
    if rc is not None and pc is not None:
        return Verdict.CORRECT if complex_equal(pc, rc) else Verdict.INCORRECT
    return None


def judge(prediction: str | None, reference: str, timeout: float = DEFAULT_TIMEOUT_S) -> Verdict:
    r"""Whether ``prediction`` (a solution text or a bare answer) is equivalent to ``reference``.

    A solution's last ``\boxed{}`` is graded. Returns :class:`Verdict`; ``TIMEOUT`` when the
    symbolic comparison took longer than ``timeout`` seconds (its worker is killed). Safe to call
    from any thread. See docs/grading.md for what counts as equal.
    """
    if prediction is None or not str(prediction).strip():
        return Verdict.INCORRECT
    pred, kind = _prediction(str(prediction))
    boxed_ref = last_boxed(str(reference))  # a reference given as a boxed solution: its answer
    ref = clean(str(reference) if boxed_ref is None else boxed_ref)
    if refuse(pred) or refuse(ref):  # never parsed: equal only as text
        return Verdict.CORRECT if canonical(pred) == canonical(ref) else Verdict.INCORRECT
    if kind == "answer":
        quick = _quick(pred, ref)
        if quick is not None:
            return quick
        pred = _LAST_LETTER.sub(r"{\1}", strip_units(pred, loose=parse_number(ref) is not None))
    ref = _LAST_LETTER.sub(r"{\1}", strip_units(ref))
    got = _grading_pool().run({"pred": pred, "ref": ref, "kind": kind}, timeout)
    if got is None:
        return Verdict.TIMEOUT
    return Verdict.CORRECT if got else Verdict.INCORRECT


def grade(prediction: str | None, reference: str, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    """``judge(...)`` as a bool: True only when correct. A timeout counts as incorrect and is
    logged as a warning; use :func:`judge` to record it as such."""
    v = judge(prediction, reference, timeout)
    if v is Verdict.TIMEOUT:
        _log.warning("grading timed out after %.0f s; counted as incorrect (reference %r)", timeout, reference)
    return v is Verdict.CORRECT
