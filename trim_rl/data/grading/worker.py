r"""The symbolic comparison (math-verify) and the worker process that runs it for the pool.

Protocol, one JSON line each way: the parent sends ``{"pred": ..., "ref": ..., "kind": ...,
"cpu_s": ...}`` and the worker answers ``{"equal": true|false}``. The worker starts with one line
``ready`` once math-verify is imported, so that start-up never counts against a grading deadline.
"""

from __future__ import annotations

import json
import os
import sys


def symbolic_equal(pred: str, ref: str, kind: str) -> bool:
    r"""math-verify's equivalence of a cleaned answer (``kind="answer"``) or of a solution text
    without ``\boxed`` (``kind="text"``, math-verify finds its answer) with a cleaned reference.

    No timeout here: this runs in a worker process that the parent kills at its deadline.
    """
    from math_verify import parse, verify

    pred_text = f"\\boxed{{{pred}}}" if kind == "answer" else (pred if "$" in pred else f"${pred}$")
    gold = parse(f"${ref}$", parsing_timeout=None) or parse(ref, parsing_timeout=None)
    got = parse(pred_text, parsing_timeout=None)
    if not gold or not got:
        return pred.strip() == ref.strip()
    return bool(verify(gold, got, timeout_seconds=None))


def _limit_cpu(seconds: float) -> None:
    # The kernel ends this job if it overruns even when the parent is gone (no GIL involved).
    try:
        import resource

        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(used.ru_utime + used.ru_stime + seconds) + 1
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        if hard == resource.RLIM_INFINITY or soft <= hard:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or not allowed: the parent's deadline stays
        pass


def main() -> None:
    """Serve comparisons on stdin/stdout until stdin closes."""
    import logging

    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # a stray print must not corrupt the protocol
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" warning
    symbolic_equal("1", "1", "answer")  # import and warm math-verify before saying ready
    out.write("ready\n")
    for line in sys.stdin:
        job = json.loads(line)
        _limit_cpu(float(job.get("cpu_s", 60)))
        try:
            equal = symbolic_equal(job["pred"], job["ref"], job["kind"])
        except Exception:  # math-verify catches its own errors; anything left is "not equal"
            equal = False
        out.write(json.dumps({"equal": equal}) + "\n")


if __name__ == "__main__":
    main()
