"""The simulator's parameters: one JSON file (``resources/sim_params.json``) holds every number.

``model`` holds the latent-correctness model fitted by ``python -m trim_rl.sim calibrate`` on the
math500 profile; ``profiles`` holds how each benchmark profile is derived from it.  Nothing else in
the simulator carries a tuned constant, so refitting means rewriting this one file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from trim_rl.data.schema import MAX_STEPS
from trim_rl.data.trees import atomic_output
from trim_rl.fsutil import read_json_object
from trim_rl.resources import resource_path

PARAMS_FILE = "sim_params.json"
LEVEL_RULES = ("math", "aime_number", "constant")
PRM_TABLES = ("math_train", "omnimath")  # the tables of trim_rl.sim.prm_scores
_PROBABILITIES = ("m0_w", "m1_w", "m2_w", "q2_w", "m0_s", "q2_s")
_POSITIVE = ("L0", "tau", "L_s", "L_err", "T_w", "T_s", "beta_low")
MAX_DRAWS = 10_000  # trees per problem; the tree count of a whole file is bounded in generate.py
MAX_NODES = 100_000  # nodes per tree (the shipped profiles use 1500)


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


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_profile(raw, where: str) -> ProfileParams:
    """A profile entry with every field of the right kind; ``ValueError`` naming ``where`` and the key."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
    known = {f.name: f for f in fields(ProfileParams)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}")
    if "benchmark" not in raw:
        raise ValueError(f"{where}.benchmark: missing")
    for key, v in raw.items():
        bad = None
        if key == "benchmark":
            from trim_rl.data.problems import BENCHMARKS

            ok = isinstance(v, str) and (v in BENCHMARKS or Path(v).is_file())
            bad = None if ok else f"one of {', '.join(BENCHMARKS)} or an existing .jsonl file"
        elif key == "prm_table":
            bad = None if v in PRM_TABLES else f"one of {', '.join(PRM_TABLES)}"
        elif key == "level":
            bad = None if v in LEVEL_RULES else f"one of {', '.join(LEVEL_RULES)}"
        elif key in ("test_fraction", "val_fraction"):
            bad = None if _number(v) and 0 <= v <= 1 else "a number in [0, 1]"
        elif key in ("length", "tokens"):
            bad = None if _number(v) and v > 0 else "a finite number > 0"
        elif key in ("level_base", "level_slope"):
            bad = None if _number(v) else "a finite number"
        elif key == "max_interventions":
            bad = None if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_STEPS else \
                f"an integer in [0, {MAX_STEPS}]"
        elif key == "max_nodes":
            bad = None if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_NODES else \
                f"an integer in [1, {MAX_NODES}]"
        elif key == "draws":
            ok = isinstance(v, dict) and set(v) == {"train", "val", "test"} and all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_DRAWS for d in v.values())
            bad = None if ok else f"an object with train, val and test, each an integer in [1, {MAX_DRAWS}]"
        if bad:
            shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:60] + "..."
            raise ValueError(f"{where}.{key}: expected {bad}, got {shown}")
    return ProfileParams(**raw)


def load_params(path: str | os.PathLike | None = None) -> SimParams:
    """Load simulator parameters (default: the fitted file shipped with the package); a malformed
    file is a ``ValueError`` naming it and the key."""
    path = Path(path) if path is not None else resource_path(PARAMS_FILE)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, expected a parameter JSON file")
    raw = read_json_object(path)
    for key, kind in (("version", (str, int)), ("model", dict), ("profiles", dict)):
        if key not in raw:
            raise ValueError(f"{path}: key {key!r} is missing")
        if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
            raise ValueError(f"{path}: key {key!r} has the wrong type ({type(raw[key]).__name__})")
    known = set(ModelParams.names())
    unknown = set(raw["model"]) - known
    if unknown:
        raise ValueError(f"{path}: model: unknown parameters {sorted(unknown)}")
    for key, v in raw["model"].items():
        if not _number(v):
            raise ValueError(f"{path}: model.{key}: expected a finite number, got {v!r}")
        if key in _PROBABILITIES and not 0 <= v <= 1:
            raise ValueError(f"{path}: model.{key}: expected a probability in [0, 1], got {v!r}")
        if key in _POSITIVE and not v > 0:
            raise ValueError(f"{path}: model.{key}: expected a number > 0, got {v!r}")
        if key.startswith("sig_") and v < 0:
            raise ValueError(f"{path}: model.{key}: expected a standard deviation >= 0, got {v!r}")
    if not raw["profiles"]:
        raise ValueError(f"{path}: profiles: no profile")
    fit = raw.get("fit", {})
    if not isinstance(fit, dict):
        raise ValueError(f"{path}: key 'fit' has the wrong type ({type(fit).__name__})")
    return SimParams(
        version=str(raw["version"]),
        model=ModelParams(**raw["model"]),
        profiles={k: _check_profile(v, f"{path}: profiles.{k}") for k, v in raw["profiles"].items()},
        fit=fit,
    )


def save_params(params: SimParams, path: str | os.PathLike | None = None) -> Path:
    """Atomically write parameters as indented JSON."""
    path = Path(path) if path is not None else resource_path(PARAMS_FILE)
    with atomic_output(path, "w") as fh:
        json.dump(params.to_json(), fh, indent=1)
        fh.write("\n")
    return path
