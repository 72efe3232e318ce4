"""TRIM-POMDP's settings: the ``fit`` and ``solver`` blocks of an ``algo: pomdp`` agent YAML.

One definition each, used by the YAML reader (:mod:`trim_rl.training.config`, which checks every
field against its metadata), the trainer and the solver; numpy-free, so reading a config stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trim_rl.configs import check

_grid = check(lambda v: v >= 2, "an integer >= 2")
_pos_int = check(lambda v: v >= 1, "an integer >= 1")


@dataclass
class FitConfig:
    """TRIM-POMDP's fit (``fit``): the keyword arguments of :func:`trim_rl.agents.pomdp.fit.fit_model`."""

    n_bins: int = field(default=20, metadata=_grid)
    bandwidth: float = field(default=0.02, metadata=check(lambda v: v > 0, "a number > 0"))
    token_bins: int = field(default=4, metadata=_pos_int)
    n_classes: int = field(default=2, metadata=_pos_int)
    regen_prob: float = field(default=0.2, metadata=check(lambda v: 0 < v < 1, "a number in (0, 1)"))
    min_labelled: float = field(default=0.5, metadata=check(lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"))
    use_token_evidence: bool = True
    table: str | None = None


@dataclass
class SolverConfig:
    """TRIM-POMDP's solver grids (``solver``; :func:`trim_rl.agents.pomdp.solver.solve`)."""

    p_grid: int = field(default=101, metadata=_grid)  # points of the prefix belief grid
    obs_bins: int = field(default=20, metadata=_grid)  # PRM score bins of the planner's expectations
    simplex_grid: int = field(default=51, metadata=_grid)  # points per axis of the policy table over (b0, b2)

    def as_dict(self) -> dict:
        return dict(self.__dict__)
