"""Where the simulator's tree files live: shipped in the package (math500, seed 0) or generated
once into a cache folder (other profiles), always with the same bytes for the same seed."""

from __future__ import annotations

from pathlib import Path

from trim_rl.data.flat import FlatTrees, concat, load_flat
from trim_rl.data.flat_cache import cache_root, load_flat_cached
from trim_rl.resources import resource_path
from trim_rl.sim.generate import generate_file
from trim_rl.sim.params import load_params

BUNDLED_SEED = 0
BUNDLED_PROFILES = ("math500",)


def cache_dir() -> Path:
    """``$TRIM_RL_CACHE`` or ``~/.cache/trim_rl``."""
    return cache_root()


def bundled_path(profile: str, split: str) -> Path:
    return Path(resource_path("trees", f"{profile}_{split}.jsonl.gz"))


def tree_file(profile: str, split: str, seed: int = BUNDLED_SEED, progress: bool = False) -> Path:
    """Path of the simulated trees of ``profile``/``split`` for ``seed``, generating them if needed."""
    if seed == BUNDLED_SEED and profile in BUNDLED_PROFILES:
        p = bundled_path(profile, split)
        if p.exists():
            return p
    params = load_params()
    out = cache_dir() / "trees" / f"sim{params.version}" / f"{profile}_{split}_seed{seed}.jsonl.gz"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        generate_file(profile, split, seed, out, params=params, progress=progress)
    return out


def parse_seeds(text: str, spec: str) -> list[int]:
    """``7``, ``0-3`` or ``0,2,5`` (ranges inclusive) as a list of seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"tree spec {spec!r}: the seed part must be N, A-B or a comma list of those") from None
    return seeds


def resolve_tree_spec(spec: str | list[str], progress: bool = False) -> list[Path]:
    """A tree file path, ``sim:PROFILE:SPLIT[:SEEDS]`` for simulated trees (SEEDS: ``N``, ``A-B`` or
    ``N,M,...``; one file per seed), or a list of those."""
    if isinstance(spec, (list, tuple)):
        return [p for s in spec for p in resolve_tree_spec(s, progress)]
    if spec.startswith("sim:"):
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"tree spec {spec!r}: use sim:PROFILE:SPLIT[:SEEDS]")
        seeds = parse_seeds(parts[3], spec) if len(parts) == 4 else [BUNDLED_SEED]
        return [tree_file(parts[1], parts[2], seed, progress) for seed in seeds]
    p = Path(spec)
    if not p.exists():
        raise FileNotFoundError(f"tree file {spec} does not exist (or use sim:PROFILE:SPLIT[:SEEDS])")
    return [p]


def load_trees(spec: str | list[str], progress: bool = False) -> FlatTrees:
    """Trees of a spec (see :func:`resolve_tree_spec`) as one :class:`~trim_rl.data.flat.FlatTrees`.

    Simulated trees (``sim:...``) go through the flat cache (:mod:`trim_rl.data.flat_cache`), so
    they are parsed once; tree files named directly are read and validated on every call."""
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    parts = []
    for s in specs:
        for p in resolve_tree_spec(s, progress):
            parts.append(load_flat_cached(p) if str(s).startswith("sim:") else load_flat(p))
    if not parts:
        raise ValueError(f"tree spec {spec!r} names no trees")
    return concat(parts)
