"""The fitted POMDP: observation models of weak and strong steps, token-cost bins and transitions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trim_rl.agents.pomdp.observation import ObservationModel
from trim_rl.agents.pomdp.tokens import TokenModel
from trim_rl.agents.pomdp.transition import TransitionModel


@dataclass
class POMDPModel:
    """Everything the filter and the solver need; serialisable as flat arrays + a JSON dict."""

    weak_obs: ObservationModel
    strong_obs: ObservationModel
    tokens: TokenModel
    transition: TransitionModel
    info: dict = field(default_factory=dict)  # provenance and fit statistics

    @property
    def horizon(self) -> int:
        return self.transition.horizon

    @property
    def max_interventions(self) -> int:
        return self.transition.max_interventions

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.weak_obs.arrays("weak_obs"), **self.strong_obs.arrays("strong_obs"), **self.tokens.arrays(),
                **self.transition.arrays()}

    def meta(self) -> dict:
        return {"weak_obs": self.weak_obs.meta(), "strong_obs": self.strong_obs.meta(),
                "tokens": {"n_bins": self.tokens.n_bins, "edges": self.tokens.edges.tolist(),
                           "score_bands": self.tokens.bands.tolist(),
                           "strong_cost": [round(float(v), 3) for v in self.tokens.strong_cost]},
                "transition": self.transition.meta(), "info": self.info}

    @classmethod
    def from_arrays(cls, arrays, meta: dict) -> POMDPModel:
        return cls(weak_obs=ObservationModel.from_arrays(arrays, "weak_obs", meta["weak_obs"]),
                   strong_obs=ObservationModel.from_arrays(arrays, "strong_obs", meta["strong_obs"]),
                   tokens=TokenModel.from_arrays(arrays),
                   transition=TransitionModel.from_arrays(arrays, meta["transition"]), info=dict(meta.get("info", {})))
