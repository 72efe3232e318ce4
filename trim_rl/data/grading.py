"""Answer grading with ``math-verify`` (symbolic equivalence, not string equality)."""

from __future__ import annotations

import threading

from trim_rl.data.problems import last_boxed


def _timeout() -> int | None:
    # math-verify's timeouts use signals, which only work in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


def extract_answer(solution: str) -> str | None:
    r"""The final answer of a solution: its last ``\boxed{...}``, or None when there is none."""
    return last_boxed(solution)


def grade(prediction: str, reference: str) -> bool:
    r"""True when ``prediction`` (a solution text or a bare answer) is equivalent to ``reference``.

    A solution's last ``\boxed{}`` is graded; a reference without ``$`` or ``\boxed`` is wrapped in
    ``$...$`` so that LaTeX answers parse.
    """
    from math_verify import parse, verify

    if prediction is None or not str(prediction).strip():
        return False
    t = _timeout()
    boxed = last_boxed(prediction)
    if boxed is not None:
        pred_text = f"\\boxed{{{boxed}}}"
    else:  # a bare answer: wrap it like the reference so that LaTeX parses
        p = str(prediction).strip()
        pred_text = p if "$" in p else f"${p}$"
    ref = reference.strip()
    ref_text = ref if ("$" in ref or "\\boxed" in ref) else f"${ref}$"
    gold = parse(ref_text, parsing_timeout=t)
    if not gold:
        gold = parse(ref, parsing_timeout=t)
    pred = parse(pred_text, parsing_timeout=t)
    if not gold or not pred:
        return (boxed if boxed is not None else str(prediction)).strip() == ref
    return bool(verify(gold, pred, timeout_seconds=t))
