"""TRIM-POMDP on the SB3 ``predict`` protocol, and its artifact: ``policy.json`` + ``policy.npz``.

``predict`` runs the Bayes filter on the ``agg`` observation (per-episode beliefs live in the returned
``state``; they restart where ``episode_start`` is set) and takes the greedy action of the solved
value table at the decision belief (exactly the action the solver's policy table holds at belief
grid points).  One observation at a time (live decoding) works the same way.

The artifact holds no pickle: arrays in ``policy.npz`` (``np.savez_compressed``; loaded with
``allow_pickle=False``, sha256 checked) and everything else in ``policy.json``: format, kind, family,
lambda, observation builder, the fitted model's parameters and grids, solver settings, versions.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from pathlib import Path
from typing import Any

import numpy as np

from trim_rl import __version__
from trim_rl.agents.base import PolicyBase, apply_mask
from trim_rl.agents.checkpoint import FORMAT, file_in_folder, price_field, read_policy_json, requested_budget, sha256_file
from trim_rl.agents.pomdp.belief import BeliefFilter, BeliefState
from trim_rl.agents.pomdp.config import SolverConfig
from trim_rl.agents.pomdp.model import POMDPModel
from trim_rl.agents.pomdp.solver import QFunction, Solution
from trim_rl.fsutil import atomic_output, write_text

ARRAYS = "policy.npz"
FAMILY = "TRIM-POMDP"


class POMDPPolicy(PolicyBase):
    """A solved TRIM-POMDP policy for one lambda."""

    obs = "agg"
    budget_conditioned = False
    stateful = True  # predict carries each problem's belief in ``state``

    def __init__(self, model: POMDPModel, solution: Solution, folder: str | Path | None = None,
                 meta: dict[str, Any] | None = None, family: str = FAMILY):
        self.model, self.solution = model, solution
        self.lam = float(solution.lam)
        self.family = family
        self.folder = Path(folder) if folder is not None else Path(".")
        self.meta: dict[str, Any] = meta or {}
        self.filter = BeliefFilter(model)
        self.q = QFunction(model, self.lam, solution.config.obs_bins)
        # the value table and the token-bin edges as lists, for one observation at a time (_predict_one)
        self._value = solution.value.tolist() if self.filter.scalar_ok else None
        self._edges = model.tokens.edges.tolist()

    @property
    def requested_budget(self) -> float | None:
        """The budget (% of always-strong's strong tokens) this table was solved for, if any."""
        return requested_budget(self.meta)

    def q_values(self, state: BeliefState, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q_keep, Q_regen) at the beliefs of ``state`` (just updated by the filter)."""
        c = self.model.tokens.bin(tokens)
        return self.q(self.solution.value, state.depth, state.k, c, state.states)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start=None, deterministic: bool = True,
                action_masks: np.ndarray | None = None) -> tuple[np.ndarray, BeliefState]:
        obs = np.atleast_2d(np.asarray(observation, dtype=np.float64))
        st = state if isinstance(state, BeliefState) else None
        if obs.shape[0] == 1 and self._value is not None and np.isfinite(obs[0, :6]).all():
            return self._predict_one(obs[0, :6].tolist(), st, episode_start, action_masks)
        st, _ = self.filter.step(st, obs, episode_start)
        qk, qr = self.q_values(st, obs[:, 3] * 100.0)
        return apply_mask((qr > qk).astype(np.int64), action_masks), st

    def _predict_one(self, obs: list, state, episode_start, action_masks) -> tuple[np.ndarray, BeliefState]:
        """``predict`` of one observation on Python floats (live decoding): the same beliefs and
        actions bit for bit, without numpy's per-call overhead on arrays of one row."""
        restart = episode_start is not None and bool(np.asarray(episode_start, dtype=bool).reshape(1)[0])
        st, b = self.filter.step_one(state, obs, restart)
        c = bisect_right(self._edges, obs[3] * 100.0)
        qk, qr = self.q.one(self._value, int(st.depth[0]), int(st.k[0]), c, b)
        return apply_mask(np.array([qr > qk], dtype=np.int64), action_masks), st

    # -- artifact --------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.model.arrays(), "value": self.solution.value, "action": self.solution.action}

    def save(self, folder: str | Path, extra_meta: dict | None = None) -> Path:
        """Write ``policy.npz`` then ``policy.json`` into ``folder`` (created if needed; each file
        replaced atomically, the JSON last, so a folder with ``policy.json`` is complete)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = folder / ARRAYS
        with atomic_output(arrays, "wb") as fh:
            np.savez_compressed(fh, **self.arrays())
        sol = self.solution
        meta = {
            "format": FORMAT, "kind": "pomdp", "family": self.family, "name": folder.name,
            "observation": {"name": "agg", "budget_conditioned": False},
            "lam": self.lam, "lam_range": None,
            "arrays": ARRAYS, "sha256": sha256_file(arrays),
            "states": ["S0 all steps correct", "S1 an earlier step wrong", "S2 only the newest step wrong"],
            "objective": "P(correct) - lam * strong tokens",
            "model": self.model.meta(),
            "solver": {**sol.config.as_dict(), "seconds": round(sol.seconds, 3),
                       "value_axes": ["step", "regenerations_used", "p_prefix_correct"],
                       "action_axes": ["step", "regenerations_used", "token_bin", "b0_index", "b2_index"]},
            "versions": {"trim_rl": __version__, "numpy": np.__version__},
            **(extra_meta or {}),
        }
        write_text(folder / "policy.json", json.dumps(meta, indent=1) + "\n")
        self.folder, self.meta = folder, meta
        return folder


def load_pomdp(folder: str | Path) -> POMDPPolicy:
    """Load a TRIM-POMDP artifact (checks format, kind and the sha256 of ``policy.npz``)."""
    folder = Path(folder)
    meta_path = folder / "policy.json"
    meta = read_policy_json(meta_path)
    if meta.get("format") != FORMAT or meta.get("kind") != "pomdp":
        raise ValueError(f"{meta_path}: not a TRIM-POMDP policy (format {meta.get('format')!r}, "
                         f"kind {meta.get('kind')!r})")
    path = file_in_folder(folder, meta.get("arrays", ARRAYS), meta_path, "arrays")
    lam = price_field(meta.get("lam"), meta_path)
    if lam is None:
        raise ValueError(f"{meta_path}: field 'lam' must be the price the table was solved for, got null")
    s = meta.get("solver")
    fields = SolverConfig().as_dict()
    if not isinstance(s, dict) or not all(isinstance(s.get(k), int) and not isinstance(s.get(k), bool) and s[k] >= 2
                                          for k in fields):
        raise ValueError(f"{meta_path}: field 'solver' must hold the integers {', '.join(fields)} (each >= 2)")
    if not isinstance(meta.get("sha256"), str) or not isinstance(meta.get("model"), dict):
        raise ValueError(f"{meta_path}: fields 'sha256' (text) and 'model' (an object) are required")
    digest = sha256_file(path)
    if digest != meta["sha256"]:
        raise ValueError(f"{path}: sha256 {digest} does not match policy.json ({meta['sha256']})")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    model = POMDPModel.from_arrays(arrays, meta["model"])
    cfg = SolverConfig(**{k: int(s[k]) for k in fields})
    sol = Solution(float(lam), arrays["value"], arrays["action"], float(s.get("seconds", 0.0)), cfg)
    return POMDPPolicy(model, sol, folder=folder, meta=meta, family=meta.get("family", FAMILY))
