"""Token-cost bins: the weak candidate's length predicts what regenerating it costs, and is evidence.

A weak step's token count is binned at quantiles of the training steps (``edges``).  Per bin the
model keeps the mean token count of the strong step that replaces it (``strong_cost``, the price of
a regeneration in strong tokens) and P(bin | latent state, PRM score band) (``p_bin``): wrong steps
run longer, and within a state the length depends on the score too (steps the PRM scores near 0 are
longer), so the token evidence is conditioned on the score band to avoid counting it twice.
Without step labels ``p_bin`` is uniform (no evidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORE_BANDS = (0.1, 0.5, 0.9)  # inner edges of the PRM score bands


@dataclass
class TokenModel:
    edges: np.ndarray  # (C - 1,) inner bin edges in tokens
    strong_cost: np.ndarray  # (C,) mean strong tokens of a regeneration per weak-token bin
    p_bin: np.ndarray  # (3, B, C) P(token bin | state of the weak candidate, PRM score band)
    bands: np.ndarray  # (B - 1,) inner edges of the score bands

    @property
    def n_bins(self) -> int:
        return int(self.strong_cost.shape[0])

    def bin(self, tokens: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, np.asarray(tokens, dtype=np.float64), side="right").astype(np.int64)

    def band(self, score: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.bands, np.asarray(score, dtype=np.float64), side="right").astype(np.int64)

    def likelihood(self, score: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """(n, 3) P(token bin | state, score band) of each candidate."""
        return np.moveaxis(self.p_bin[:, self.band(score), self.bin(tokens)], 0, -1)

    def band_likelihood(self, n_score_bins: int) -> np.ndarray:
        """(3, X, C) P(token bin | state, band of score bin x) for score bins of width 1 / X."""
        centres = (np.arange(n_score_bins) + 0.5) / n_score_bins
        return self.p_bin[:, self.band(centres), :]

    @classmethod
    def fit(cls, weak_tokens: np.ndarray, weak_score: np.ndarray, strong_tokens: np.ndarray,
            has_strong: np.ndarray, state: np.ndarray | None, weight: np.ndarray | None = None,
            n_bins: int = 4, bands: tuple[float, ...] = SCORE_BANDS) -> TokenModel:
        """Quantile bins of ``weak_tokens``; ``state`` of the weak candidate (-1 unknown) or None."""
        wt = np.asarray(weak_tokens, dtype=np.float64)
        w = np.ones(wt.size) if weight is None else np.asarray(weight, dtype=np.float64)
        order = np.argsort(wt, kind="stable")
        cw = np.cumsum(w[order]) / w.sum()
        edges = np.array([wt[order][min(np.searchsorted(cw, q), wt.size - 1)] for q in np.arange(1, n_bins) / n_bins])
        edges = np.unique(edges) + 0.5  # integer token counts: split between counts
        c = edges.size + 1
        bands_arr = np.asarray(bands, dtype=np.float64)
        model = cls(edges=edges, strong_cost=np.zeros(c), p_bin=np.ones((3, bands_arr.size + 1, c)), bands=bands_arr)
        b = model.bin(wt)
        hs = np.asarray(has_strong, dtype=bool)
        num = np.bincount(b[hs], weights=(w * np.asarray(strong_tokens, dtype=np.float64))[hs], minlength=c)
        den = np.bincount(b[hs], weights=w[hs], minlength=c)
        overall = num.sum() / max(den.sum(), 1e-300)
        model.strong_cost = np.where(den > 0, num / np.maximum(den, 1e-300), overall)
        if state is not None:
            s = np.asarray(state, dtype=np.int64)
            ok = s >= 0
            band = model.band(weak_score)
            h = np.ones_like(model.p_bin)  # Laplace
            np.add.at(h, (s[ok], band[ok], b[ok]), w[ok])
            model.p_bin = h
        model.p_bin = model.p_bin / model.p_bin.sum(axis=2, keepdims=True)
        return model

    def arrays(self) -> dict[str, np.ndarray]:
        return {"tokens_edges": self.edges, "tokens_strong_cost": self.strong_cost, "tokens_p_bin": self.p_bin,
                "tokens_bands": self.bands}

    @classmethod
    def from_arrays(cls, arrays) -> TokenModel:
        return cls(edges=np.asarray(arrays["tokens_edges"]), strong_cost=np.asarray(arrays["tokens_strong_cost"]),
                   p_bin=np.asarray(arrays["tokens_p_bin"]), bands=np.asarray(arrays["tokens_bands"]))
