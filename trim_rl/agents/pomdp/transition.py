"""Transition model: per-step error rates of the weak and strong models and the chance a solution
ends at each step, by step index (0-based depth = steps already accepted).

- ``err_weak[t]``: P(weak step wrong | prefix correct).
- ``err_strong[t, j]``: P(strong step wrong | prefix correct, the weak candidate right (j=0) / wrong
  (j=1)); the two models err on the same hard steps, so a wrong weak step makes a wrong strong one
  likelier.
- ``end_weak[t, s]`` / ``end_strong[t, s]``: P(the candidate step is final | its own latent state s).

Problems differ in difficulty and a step-level Markov model cannot see that, so the filter also
carries a belief over ``D`` latent difficulty classes (a mixture fitted by EM over problems):
``class_prior[d]``, ``class_err_weak[t, d]``, ``class_err_strong[t, j, d]``.  The planner uses the
population rates ``err_weak`` / ``err_strong`` (the classes summed out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from trim_rl.data.schema import MAX_STEPS
from trim_rl.resources import resource_path


def pooled_rate(hits: np.ndarray, total: np.ndarray, n_min: float = 50.0, prior: float | None = None,
                prior_n: float = 2.0) -> np.ndarray:
    """Rate per index with a window widened symmetrically until it holds ``n_min`` samples, then
    shrunk towards ``prior`` (default the overall rate) with ``prior_n`` pseudo-samples."""
    hits, total = np.asarray(hits, dtype=np.float64), np.asarray(total, dtype=np.float64)
    base = hits.sum() / total.sum() if total.sum() > 0 else 0.0
    prior = base if prior is None else prior
    out = np.empty(hits.size)
    for t in range(hits.size):
        r = 0
        while True:
            lo, hi = max(0, t - r), min(hits.size, t + r + 1)
            if total[lo:hi].sum() >= n_min or (lo == 0 and hi == hits.size):
                break
            r += 1
        out[t] = (hits[lo:hi].sum() + prior_n * prior) / (total[lo:hi].sum() + prior_n)
    return out


@dataclass
class TransitionModel:
    """Error and ending probabilities per step index (see module docstring)."""

    err_weak: np.ndarray  # (T,)
    err_strong: np.ndarray  # (T, 2)
    end_weak: np.ndarray  # (T, 3)
    end_strong: np.ndarray  # (T, 3)
    class_prior: np.ndarray  # (D,)
    class_err_weak: np.ndarray  # (T, D)
    class_err_strong: np.ndarray  # (T, 2, D)
    max_interventions: int = 6
    source: str = ""

    @property
    def horizon(self) -> int:
        return int(self.err_weak.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.class_prior.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"transition_{f.name}": getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    @classmethod
    def from_arrays(cls, arrays, meta: dict) -> TransitionModel:
        kw = {f.name: np.asarray(arrays[f"transition_{f.name}"]) for f in fields(cls)
              if f"transition_{f.name}" in arrays}
        return cls(**kw, max_interventions=int(meta["max_interventions"]), source=str(meta.get("source", "")))

    def meta(self) -> dict:
        """Settings plus every rate rounded (readable; the exact arrays travel in the npz)."""
        rates = {f.name: np.round(getattr(self, f.name), 5).tolist() for f in fields(self)
                 if isinstance(getattr(self, f.name), np.ndarray)}
        return {"max_interventions": self.max_interventions, "source": self.source, "horizon": self.horizon,
                "classes": self.n_classes, "rates": rates}

    @classmethod
    def from_step_stats(cls, path: str | Path | None = None, weak: str = "qwen2.5-1.5b-instruct",
                        strong: str = "qwen2.5-7b-instruct", max_interventions: int = 6) -> TransitionModel:
        """Fit from per-solution step statistics (``step_stats_*.json``: lengths of correct solutions and
        first-error positions of wrong ones), for data without trees.  The first-error hazard gives the
        error rates (strong errors independent of the weak step's); the length hazard of correct
        solutions gives the ending chance, the same for every state."""
        if path is None:
            path = resource_path("calibration", "step_stats_math_train.json")
        raw = json.loads(Path(path).read_text(encoding="utf-8"))["models"]
        T = MAX_STEPS

        def hazards(model: str) -> tuple[np.ndarray, np.ndarray]:
            length = np.asarray(raw[model]["correct_steps"], dtype=np.int64)
            first = np.asarray(raw[model]["incorrect_steps"], dtype=np.int64)
            t = np.arange(T)
            err_hits = (first[None, :] == t[:, None] + 1).sum(1)
            at_risk = (first[None, :] >= t[:, None] + 1).sum(1) + (length[None, :] >= t[:, None] + 1).sum(1)
            end_hits = (length[None, :] == t[:, None] + 1).sum(1)
            end_risk = (length[None, :] >= t[:, None] + 1).sum(1)
            return pooled_rate(err_hits, at_risk), pooled_rate(end_hits, end_risk, prior=1.0)

        ew, hw = hazards(weak)
        es, hs = hazards(strong)
        err_strong = np.stack([es, es], axis=1)
        return cls(err_weak=ew, err_strong=err_strong, end_weak=np.repeat(hw[:, None], 3, 1),
                   end_strong=np.repeat(hs[:, None], 3, 1), class_prior=np.ones(1), class_err_weak=ew[:, None],
                   class_err_strong=err_strong[:, :, None], max_interventions=max_interventions,
                   source=f"step_stats:{Path(path).name}")
