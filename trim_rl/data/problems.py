"""Benchmark problems shipped with trim_rl (copies of the TRIM authors' evaluation data).

Every loader returns :class:`Problem` records with a stable ``problem_id`` (``dataset/native-id``),
the problem text, the reference answer and, where the benchmark has one, its difficulty level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trim_rl.data.errors import TreeFormatError
from trim_rl.data.trees import iter_json_lines
from trim_rl.resources import resource_path

BENCHMARKS = ("math500", "aime", "aime24", "amc23", "olympiadbench", "minerva", "gsm8k")


@dataclass(frozen=True)
class Problem:
    """One benchmark problem."""

    problem_id: str
    dataset: str
    problem: str
    answer: str
    level: int | None = None
    source_split: str = "test"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


_SEPARATORS = re.compile(r"(?:\s|[,;.]|\band\b|\bor\b)*")


def join_formulas(answer: str) -> str:
    r"""An answer written as several ``$...$`` formulas (OlympiadBench's ``$69$,$84$``) as one
    comma-separated list, so that every piece is graded (``69, 84``). When words other than
    "and"/"or" stand between the formulas (``$f(x)=ax+b$, where $b$ is an integer``) the first
    formula is the answer and the rest qualifies it."""
    s = answer.strip()
    if "$" not in s:
        return s
    parts = s.split("$")
    # an odd count (`$221,$8$`) cannot be read as delimiters: every `$` separates
    if len(parts) % 2 and not all(_SEPARATORS.fullmatch(t) for t in parts[0::2]):
        return next((p.strip(" ,;.") for p in parts[1::2] if p.strip(" ,;.")), s.replace("$", "").strip())
    pieces = parts[1::2] if len(parts) % 2 else parts
    return ", ".join(p.strip(" ,;.") for p in pieces if p.strip(" ,;."))


def _rows(name: str) -> list[tuple[int, dict]]:
    return list(iter_json_lines(resource_path("benchmarks", f"{name}.jsonl.gz")))


def _num(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _math500() -> list[Problem]:
    return [
        Problem(f"math500/{r['unique_id']}", "math500", r["problem"], str(r["answer"]), int(r["level"]),
                extra={"subject": r["subject"]})
        for _, r in _rows("math500_test")
    ]


def _aime() -> list[Problem]:
    out = []
    for split in ("train", "test"):
        for _, r in _rows(f"aime_{split}"):
            out.append(Problem(f"aime/{r['ID']}", "aime", r["problem"], _num(r["solution"]).strip(), None, split,
                               extra={"year": r["Year"], "number": int(r["Problem Number"])}))
    return out


def _aime24() -> list[Problem]:
    return [Problem(f"aime24/{r['id']}", "aime24", r["problem"], _num(r["answer"]), None) for _, r in _rows("aime24_test")]


def _amc23() -> list[Problem]:
    return [Problem(f"amc23/{r['id']}", "amc23", r["problem"], _num(r["answer"]), None) for _, r in _rows("amc23_test")]


def _olympiadbench() -> list[Problem]:
    out = []
    for _, r in _rows("olympiadbench_test"):
        ans = r["final_answer"]
        ans = ", ".join(join_formulas(str(a)) for a in (ans if isinstance(ans, list) else [ans]))
        out.append(Problem(f"olympiadbench/{r['id']}", "olympiadbench", r["question"], ans, None,
                           extra={"subfield": r.get("subfield"), "answer_type": r.get("answer_type")}))
    return out


def _minerva() -> list[Problem]:
    out = []
    for _, r in _rows("minerva_math_test"):
        ans = (last_boxed(r["solution"]) or "").replace("$", " ")  # `+$ $` where the source broke a line
        out.append(Problem(f"minerva/{r['idx']}", "minerva", r["problem"], ans.strip(), None, extra={"type": r.get("type")}))
    return out


def _gsm8k() -> list[Problem]:
    out = []
    for _, r in _rows("gsm8k_test"):
        ans = r["answer"].split("####")[-1].strip().replace(",", "")
        out.append(Problem(f"gsm8k/{r['idx']}", "gsm8k", r["question"], ans, None))
    return out


_LOADERS = {
    "math500": _math500,
    "aime": _aime,
    "aime24": _aime24,
    "amc23": _amc23,
    "olympiadbench": _olympiadbench,
    "minerva": _minerva,
    "gsm8k": _gsm8k,
}


def load_problems(name: str) -> list[Problem]:
    """Problems of a shipped benchmark (see :data:`BENCHMARKS`) or of a JSON Lines file with
    ``problem``/``question`` and ``answer`` fields (``id`` optional)."""
    if name in _LOADERS:
        return _LOADERS[name]()
    path = Path(name)
    if not path.exists():
        raise ValueError(f"unknown benchmark {name!r}: use one of {', '.join(BENCHMARKS)} or a .jsonl file")
    out = []
    for line, r in iter_json_lines(path):
        if not isinstance(r, dict):
            raise TreeFormatError(path, line, "<line>", "must be a JSON object")
        text = r.get("problem", r.get("question"))
        if not isinstance(text, str):
            raise TreeFormatError(path, line, "problem", "missing: each line needs a 'problem' (or 'question') string")
        if "answer" not in r:
            raise TreeFormatError(path, line, "answer", "missing required field")
        pid = str(r.get("id", r.get("problem_id", line)))
        lvl = r.get("level")
        out.append(Problem(f"{path.stem}/{pid}", path.stem, text, _num(r["answer"]), int(lvl) if isinstance(lvl, int) else None))
    return out
