"""Perturbed PRM scores for robustness checks (``evaluate.py --prm-noise / --prm-flip``).

Noise is Gaussian on the logit of each score: ``s' = sigmoid(logit(s) + sigma * z)`` with ``s``
clipped to [1e-4, 1 - 1e-4] first.  A logit keeps every score inside (0, 1) without piling mass at
the edges (as clipping ``s + noise`` would), and hits confident scores (near 0 or 1) less in
probability terms, as a miscalibrated PRM would.  Flips then replace a fraction ``p`` of the scores,
chosen independently, by ``1 - s``.  Both apply to every weak and strong candidate's score, seeded;
the accepted-history features (``prev_min``, ``prev_prod``, ``in_prm``) are recomputed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from trim_rl.data.flat import FlatTrees, _fill_history

EPS = 1e-4


def perturb_scores(scores: np.ndarray, noise: float, flip: float, rng: np.random.Generator) -> np.ndarray:
    """Logit-Gaussian noise of SD ``noise``, then flips of a fraction ``flip`` (see module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    z = rng.standard_normal(s.shape)
    u = rng.random(s.shape)
    if noise > 0:
        c = np.clip(s, EPS, 1 - EPS)
        with np.errstate(over="ignore"):  # a huge sigma: exp overflows to inf, the score to exactly 0 (correct)
            s = 1.0 / (1.0 + np.exp(-(np.log(c / (1 - c)) + noise * z)))
    if flip > 0:
        s = np.where(u < flip, 1.0 - s, s)
    return s


def perturb_prm(trees: FlatTrees, noise: float = 0.0, flip: float = 0.0, seed: int = 0) -> FlatTrees:
    """A copy of ``trees`` whose weak and strong PRM scores are perturbed (the input is unchanged)."""
    if noise < 0 or not 0.0 <= flip <= 1.0:
        raise ValueError(f"need noise >= 0 and 0 <= flip <= 1, got noise={noise}, flip={flip}")
    if noise == 0 and flip == 0:
        return trees
    rng = np.random.default_rng([int(seed), 0x5052])
    weak = perturb_scores(trees.weak_prm, noise, flip, rng)
    strong = np.where(trees.strong_present, perturb_scores(trees.strong_prm, noise, flip, rng), trees.strong_prm)
    n = trees.n_nodes
    out = dataclasses.replace(trees, weak_prm=weak, strong_prm=strong, prev_min=np.ones(n), prev_prod=np.ones(n),
                              in_prm=np.full(n, np.nan), in_tokens=np.zeros(n, dtype=np.int64))
    _fill_history(out)
    return out


def describe(noise: float, flip: float) -> str:
    """Label of a perturbation for reports ('' when there is none)."""
    parts = [f"PRM logit noise sigma={noise:g}"] if noise > 0 else []
    parts += [f"PRM flips p={flip:g}"] if flip > 0 else []
    return ", ".join(parts)
