"""The grader against labelled (answer, reference) pairs built from the shipped benchmarks
(tests/data/grading_agreement.py): accuracy at least 98.5 %, false positives at most 0.3 % of the
pairs that must be rejected. A few hundred pairs here; the whole set (about 24,000) is slow."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from trim_rl.data.grading import grade

MIN_ACCURACY = 0.985
MAX_FALSE_POSITIVES = 0.003  # of the pairs labelled incorrect
PER_FAMILY = 6


def _agreement():
    spec = importlib.util.spec_from_file_location("grading_agreement", Path(__file__).with_name("grading_agreement.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


AGREEMENT = _agreement()


@pytest.fixture(scope="module")
def pairs():
    return AGREEMENT.build()


def _check(got):
    wrong = "\n".join(f"  {f} (label {label}): {p[:160]!r} vs {r!r}" for p, r, label, f in got["wrong"][:30])
    assert got["agree"] >= MIN_ACCURACY * got["n"], f"{got['agree']}/{got['n']} agree; disagreements:\n{wrong}"
    assert got["false_positives"] <= MAX_FALSE_POSITIVES * got["negatives"], f"false positives:\n{wrong}"


def test_every_family_is_built(pairs):
    families = {(p[3], p[2]) for p in pairs}
    for family in ("answer-is", "hashes", "dollars-bare", "complex-reordered", "unbraced", "list-dollars",
                   "six-digits", "digits-cut-off"):
        assert (family, True) in families
    for family in ("answer-is-other", "hashes-off", "complex-conjugate", "unbraced-digit", "list-dollars-digit",
                   "three-digits", "six-digits-off", "other-answer"):
        assert (family, False) in families
    assert len(pairs) > 5000


def test_agreement_on_a_sample_of_every_family(pairs):
    by_family: dict[tuple[str, bool], list] = {}
    for p in pairs:
        by_family.setdefault((p[3], p[2]), []).append(p)
    # evenly spaced through each family: every benchmark the family draws from is in the sample
    sample = [ps[i * len(ps) // PER_FAMILY] for ps in by_family.values() for i in range(min(PER_FAMILY, len(ps)))]
    assert len(sample) >= 250
    _check(AGREEMENT.measure(sample, grade))


@pytest.mark.slow
def test_agreement_on_every_pair(pairs):
    _check(AGREEMENT.measure(pairs, grade))
