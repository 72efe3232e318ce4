"""PRM observation model: P(current score | latent state, min of earlier scores) on [0, 1]^2.

The joint density of (m = min of the earlier accepted scores, x = current score) per latent state
(0 all steps correct so far, 1 an earlier step wrong, 2 only the newest step wrong) is a binned,
reflected Gaussian kernel density: a weighted 2-D histogram on ``n_bins x n_bins`` cells smoothed
with a Gaussian kernel that is reflected at 0 and 1 (no mass leaks out of the square).  The Bayes
filter uses the conditional P(x | s, m), because the filter has already seen the history that
fixes m; the planner uses the marginal P(x | s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from trim_rl.resources import resource_path
from trim_rl.sim.prm_scores import N_STATES, read_table_mass


@dataclass
class ObservationModel:
    """Per-state joint mass ``mass[s, m_bin, x_bin]`` (each state sums to 1) plus the conditional.

    ``cond[s, m_bin, x_bin]`` = P(x bin | s, m bin): each m row is the smoothed row shrunk towards
    the state's x-marginal with ``prior_count`` pseudo-observations, so rarely seen m rows stay sane.
    """

    mass: np.ndarray
    cond: np.ndarray
    source: str = ""
    bandwidth: float = 0.0

    @property
    def n_bins(self) -> int:
        return int(self.mass.shape[1])

    @property
    def marginal(self) -> np.ndarray:
        """P(x bin | s), shape (3, n_bins)."""
        return self.mass.sum(axis=1)

    @classmethod
    def from_mass(cls, mass: np.ndarray, n_eff: np.ndarray | float, prior_count: float = 20.0,
                  floor: float = 1e-4, source: str = "", bandwidth: float = 0.0) -> ObservationModel:
        """Model from a joint mass (3, n, n) estimated from ``n_eff`` samples per state."""
        mass = np.asarray(mass, dtype=np.float64)
        n = mass.shape[1]
        mass = mass / np.maximum(mass.sum(axis=(1, 2), keepdims=True), 1e-300)
        mass = (1.0 - floor) * mass + floor / (n * n)  # every cell possible
        n_eff = np.broadcast_to(np.asarray(n_eff, dtype=np.float64), (N_STATES,))
        marg = mass.sum(axis=1, keepdims=True)  # (3, 1, n)
        rows = mass * n_eff[:, None, None]  # expected counts
        cond = (rows + prior_count * marg) / (rows.sum(axis=2, keepdims=True) + prior_count)
        return cls(mass=mass, cond=cond, source=source, bandwidth=float(bandwidth))

    @classmethod
    def fit(cls, state: np.ndarray, min_prior: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None,
            n_bins: int = 40, bandwidth: float = 0.02, prior_count: float = 20.0,
            source: str = "samples") -> ObservationModel:
        """Reflected-kernel density from labelled samples (``bandwidth`` in score units)."""
        state = np.asarray(state, dtype=np.int64)
        w = np.ones(state.size) if weight is None else np.asarray(weight, dtype=np.float64)
        ix = np.clip((np.asarray(min_prior) * n_bins).astype(np.int64), 0, n_bins - 1)
        iy = np.clip((np.asarray(score) * n_bins).astype(np.int64), 0, n_bins - 1)
        h = np.zeros((N_STATES, n_bins, n_bins))
        np.add.at(h, (state, ix, iy), w)
        n_eff = np.zeros(N_STATES)
        for s in range(N_STATES):  # Kish effective sample size of the weighted samples
            ws = w[state == s]
            n_eff[s] = ws.sum() ** 2 / max((ws**2).sum(), 1e-300) if ws.size else 0.0
        if (n_eff == 0).any():
            raise ValueError(f"no labelled samples for states {np.flatnonzero(n_eff == 0).tolist()}")
        sigma = bandwidth * n_bins
        if sigma > 0:
            h = np.stack([gaussian_filter(h[s], sigma=sigma, mode="reflect", truncate=3.0) for s in range(N_STATES)])
        return cls.from_mass(h, n_eff, prior_count, source=source, bandwidth=bandwidth)

    @classmethod
    def from_table(cls, path: str | Path | None = None, n_eff: float = 5000.0) -> ObservationModel:
        """The measured ProcessBench table (``prm_obs_*.json``; default the MATH-train one, shipped)."""
        if path is None:
            path = resource_path("calibration", "prm_obs_math_train_bin0.05.json")
        return cls.from_mass(read_table_mass(path), n_eff, source=f"table:{Path(path).name}")

    # -- evaluation ----------------------------------------------------------------------------------
    def likelihood(self, min_prior: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Density of ``score`` given each state and ``min_prior``: shape (n, 3).

        Bilinear interpolation between cell centres (clamped at the edges) of the conditional density.
        """
        n = self.n_bins
        m = np.atleast_1d(np.asarray(min_prior, dtype=np.float64))
        x = np.atleast_1d(np.asarray(score, dtype=np.float64))

        def split(v):
            pos = np.clip(v * n - 0.5, 0.0, n - 1.0)
            i = np.minimum(pos.astype(np.int64), n - 2)
            return i, pos - i

        im, fm = split(m)
        ix, fx = split(x)
        c = self.cond  # (3, n, n)
        out = (c[:, im, ix] * (1 - fm) * (1 - fx) + c[:, im + 1, ix] * fm * (1 - fx)
               + c[:, im, ix + 1] * (1 - fm) * fx + c[:, im + 1, ix + 1] * fm * fx)
        return out.T * n

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_mass": self.mass, f"{prefix}_cond": self.cond}

    @classmethod
    def from_arrays(cls, arrays, prefix: str, meta: dict) -> ObservationModel:
        return cls(mass=np.asarray(arrays[f"{prefix}_mass"]), cond=np.asarray(arrays[f"{prefix}_cond"]),
                   source=str(meta.get("source", "")), bandwidth=float(meta.get("bandwidth", 0.0)))

    def meta(self) -> dict:
        return {"source": self.source, "bandwidth": self.bandwidth, "n_bins": self.n_bins}


def bilinear(cond: list, min_prior: float, score: float) -> list[float]:
    """:meth:`ObservationModel.likelihood` of one (finite) point, the same arithmetic on Python floats;
    ``cond`` is the model's ``cond.tolist()``."""
    n = len(cond[0])
    pm, px = min(max(min_prior * n - 0.5, 0.0), n - 1.0), min(max(score * n - 0.5, 0.0), n - 1.0)
    im, ix = min(int(pm), n - 2), min(int(px), n - 2)
    fm, fx = pm - im, px - ix
    return [(c[im][ix] * (1 - fm) * (1 - fx) + c[im + 1][ix] * fm * (1 - fx)
             + c[im][ix + 1] * (1 - fm) * fx + c[im + 1][ix + 1] * fm * fx) * n for c in cond]
