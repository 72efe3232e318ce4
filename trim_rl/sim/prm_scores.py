"""PRM score distributions per latent state, measured and fitted.

The measured tables (``resources/calibration/prm_obs_*.json``) give, for each latent state
(0 = all steps correct so far, 1 = an earlier step wrong, 2 = this step is the first wrong one), the
joint mass of (min of earlier PRM scores, current score) on a square grid.  The simulator draws a
step's score from the measured conditional P(current | state, min-earlier bin), mixed with a fitted
low-score component (see :mod:`trim_rl.sim.model`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from trim_rl.resources import resource_path

N_STATES = 3
_GRID = 4096  # resolution of the inverse-CDF lookup tables


@dataclass(frozen=True)
class PRMTable:
    """Measured joint distribution: ``mass[state, min_prior_bin, current_bin]`` on ``n_bins`` bins."""

    name: str
    n_bins: int
    mass: np.ndarray  # (3, n_bins, n_bins), each state sums to 1

    def conditional_quantiles(self) -> np.ndarray:
        """``Q[state, min_bin, g]``: score at uniform quantile ``(g + 0.5) / _GRID`` of
        P(current | state, min-prior bin), piecewise uniform within bins."""
        n = self.n_bins
        cond = self.mass + 1e-12
        cond = cond / cond.sum(axis=2, keepdims=True)
        cdf = np.concatenate([np.zeros((N_STATES, n, 1)), np.cumsum(cond, axis=2)], axis=2)
        cdf[..., -1] = 1.0
        edges = np.linspace(0.0, 1.0, n + 1)
        u = (np.arange(_GRID) + 0.5) / _GRID
        q = np.empty((N_STATES, n, _GRID))
        for s in range(N_STATES):
            for b in range(n):
                q[s, b] = np.interp(u, cdf[s, b], edges)
        return q

    def marginal_current(self) -> np.ndarray:
        """Mass of the current score per bin for each state, shape ``(3, n_bins)``."""
        return self.mass.sum(axis=1)


@lru_cache(maxsize=4)
def load_prm_table(name: str = "math_train") -> PRMTable:
    """Load a measured PRM observation table shipped in ``resources/calibration``."""
    files = {"math_train": "prm_obs_math_train_bin0.05.json", "omnimath": "prm_obs_omnimath_bin0.02.json"}
    if name not in files:
        raise ValueError(f"unknown PRM table {name!r}; choose one of {sorted(files)}")
    mass = read_table_mass(resource_path("calibration", files[name]))
    for s in range(N_STATES):
        mass[s] /= mass[s].sum()
    return PRMTable(name=name, n_bins=mass.shape[1], mass=mass)


def read_table_mass(path: str | os.PathLike) -> np.ndarray:
    """The joint mass ``[state, min_prior_bin, current_bin]`` of a measured table file
    (``prm_obs_*.json``): each bin centre's probability added to its grid cell, not normalised."""
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    bin_size = float(raw["bin_size"])
    n = int(round(1.0 / bin_size))
    mass = np.zeros((N_STATES, n, n))
    for s in range(N_STATES):
        st = raw["states"][str(s)]
        centers = np.asarray(st["bin_centers"], dtype=float)
        prob = np.asarray(st["prob"], dtype=float)
        ix = np.clip((centers[:, 0] / bin_size).astype(int), 0, n - 1)
        iy = np.clip((centers[:, 1] / bin_size).astype(int), 0, n - 1)
        np.add.at(mass[s], (ix, iy), prob)
    return mass


@lru_cache(maxsize=4)
def quantile_table(name: str = "math_train") -> np.ndarray:
    """Cached :meth:`PRMTable.conditional_quantiles` of a shipped table."""
    return load_prm_table(name).conditional_quantiles()


def sample_measured(q: np.ndarray, state: np.ndarray, min_prior: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw current scores from the measured conditional given state and min of earlier scores."""
    n = q.shape[1]
    b = np.minimum((min_prior * n).astype(np.int64), n - 1)
    g = np.minimum((u * _GRID).astype(np.int64), _GRID - 1)
    return q[state, b, g]


def sample_low(u: np.ndarray, beta: float) -> np.ndarray:
    """Draw from the low-score component Beta(1, beta) (mass piled near 0 for large beta)."""
    return 1.0 - (1.0 - u) ** (1.0 / beta)


def joint_histogram(state: np.ndarray, min_prior: np.ndarray, current: np.ndarray, n_bins: int) -> np.ndarray:
    """Normalised ``(3, n_bins, n_bins)`` histogram of (min prior, current) per state."""
    h = np.zeros((N_STATES, n_bins, n_bins))
    ix = np.minimum((min_prior * n_bins).astype(np.int64), n_bins - 1)
    iy = np.minimum((current * n_bins).astype(np.int64), n_bins - 1)
    np.add.at(h, (state, ix, iy), 1.0)
    tot = h.sum(axis=(1, 2), keepdims=True)
    return h / np.maximum(tot, 1.0)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance between two distributions of the same shape."""
    return 0.5 * float(np.abs(p / p.sum() - q / q.sum()).sum())
