"""The simulator's parameters: one JSON file (``resources/sim_params.json``) holds every number.

``model`` holds the latent-correctness model fitted by ``python -m trim_rl.sim calibrate`` on the
math500 profile; ``profiles`` holds how each benchmark profile is derived from it.  Nothing else in
the simulator carries a tuned constant, so refitting means rewriting this one file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from trim_rl.data.trees import atomic_output
from trim_rl.resources import resource_path

PARAMS_FILE = "sim_params.json"


@dataclass
class ModelParams:
    """Latent-correctness model (logits, length and token scales, PRM score mixture)."""

    # difficulty: weak step-error logit = a_w + c_level*(lv-3) + sig_z*z_problem + h_step (+ first_w at step 1)
    c_level: float = 0.55
    sig_z: float = 0.8
    sig_h: float = 0.8
    a_w: float = -2.3
    first_w: float = -0.5
    # strong step-error logit = a_s + g_s*(difficulty + h_step) (+ first_s at step 1)
    a_s: float = -3.8
    g_s: float = 1.0
    first_s: float = -0.5
    # solution length: plan length L = L0*exp(L_level*(lv-3) + sig_L*zL); P(final at step j) = sigmoid((j - L')/tau)
    L0: float = 7.0
    L_level: float = 0.1
    sig_L: float = 0.3
    tau: float = 0.7
    L_s: float = 1.0  # strong plan length multiplier
    L_err: float = 1.0  # plan length multiplier once an error was made (wrong solutions end sooner)
    # tokens per step: T*exp(tok_level*(lv-3) + k_h*h + k_wrong*wrong + k_low*flagged + sig_tok*eps)
    T_w: float = 45.0
    T_s: float = 55.0
    tok_level: float = 0.05
    k_h: float = 0.1
    k_wrong: float = 0.2
    k_wrong_s: float = 0.1
    k_low: float = 0.4
    sig_tok: float = 0.4
    # PRM scores of weak steps: with prob m{state} from the low component Beta(1, beta_low), else the
    # measured conditional; a wrong step is 'silent' (scored like a correct one) with prob q2
    m0_w: float = 0.05
    m1_w: float = 0.1
    m2_w: float = 0.2
    q2_w: float = 0.05
    beta_low: float = 15.0
    # PRM scores of strong steps
    m0_s: float = 0.01
    q2_s: float = 0.05

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class ProfileParams:
    """How a benchmark profile maps its problems onto the model.

    ``level``: difficulty level used by the model, either ``"math"`` (the MATH level 1-5),
    ``"aime_number"`` (``base + slope*(problem number - 1)``) or ``"constant"`` (``base``);
    ``length``/``tokens`` multiply plan lengths and step tokens; ``splits`` the fraction of
    problems held out for test and val (the rest is train; AIME uses its own train/test files);
    ``draws`` the number of independent trees per problem in each split.
    """

    benchmark: str
    level: str = "math"
    level_base: float = 3.0
    level_slope: float = 0.0
    length: float = 1.0
    tokens: float = 1.0
    test_fraction: float = 0.4
    val_fraction: float = 0.1
    draws: dict = field(default_factory=lambda: {"train": 6, "val": 4, "test": 6})
    max_interventions: int = 5
    max_nodes: int = 1500
    prm_table: str = "math_train"


@dataclass
class SimParams:
    version: str
    model: ModelParams
    profiles: dict[str, ProfileParams]
    fit: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "model": asdict(self.model),
            "profiles": {k: asdict(v) for k, v in self.profiles.items()},
            "fit": self.fit,
        }


def load_params(path: str | os.PathLike | None = None) -> SimParams:
    """Load simulator parameters (default: the fitted file shipped with the package)."""
    path = Path(path) if path is not None else resource_path(PARAMS_FILE)
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    known = set(ModelParams.names())
    unknown = set(raw["model"]) - known
    if unknown:
        raise ValueError(f"{path}: model: unknown parameters {sorted(unknown)}")
    return SimParams(
        version=str(raw["version"]),
        model=ModelParams(**raw["model"]),
        profiles={k: ProfileParams(**v) for k, v in raw["profiles"].items()},
        fit=raw.get("fit", {}),
    )


def save_params(params: SimParams, path: str | os.PathLike | None = None) -> Path:
    """Atomically write parameters as indented JSON."""
    path = Path(path) if path is not None else resource_path(PARAMS_FILE)
    with atomic_output(path, "w") as fh:
        json.dump(params.to_json(), fh, indent=1)
        fh.write("\n")
    return path
