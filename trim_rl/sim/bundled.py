"""Where the simulator's tree files live: shipped in the package (math500, seed 0) or generated
once into a cache folder (other profiles), always with the same bytes for the same seed."""

from __future__ import annotations

import functools
from pathlib import Path

from trim_rl.argtypes import MAX_SEED, refuse_repeats
from trim_rl.data.flat import FlatTrees, concat, load_flat
from trim_rl.data.flat_cache import cache_root, load_flat_cached
from trim_rl.fsutil import existing_file
from trim_rl.resources import resource_path
from trim_rl.sim.generate import generate_file
from trim_rl.sim.params import load_params

BUNDLED_SEED = 0
BUNDLED_PROFILES = ("math500",)


#: the README's pool: ten math500 test seeds that no training (train 0-11, val 0-3), calibration or
#: model selection (the bundled test seed 0, and 3 and 9 of earlier reports) has seen
POOL_SEEDS = "100-109"
POOL_TREES = f"sim:math500:test:{POOL_SEEDS}"


def cache_dir() -> Path:
    """``$TRIM_RL_CACHE`` or ``~/.cache/trim_rl``."""
    return cache_root()


def bundled_path(profile: str, split: str) -> Path:
    return Path(resource_path("trees", f"{profile}_{split}.jsonl.gz"))


MAX_SPEC_SEEDS = 100  # each seed is one tree file, generated once (math500 test: ~20 s)
# A spec's trees are held as flat arrays (~120 bytes a node) and joined into one copy: estimated at
# half the profile's node cap a tree (math500 test trees average ~520 of 3,000 nodes, AIME ~1,500).
FLAT_BYTES_PER_NODE = 120
MAX_SPEC_GB = 12


def _check_profile_split(profile: str, split: str, params, what: str) -> None:
    from trim_rl.sim.profiles import SPLITS

    if profile not in params.profiles:
        raise ValueError(f"{what}: unknown profile {profile!r}; choose one of {', '.join(sorted(params.profiles))}")
    if split not in SPLITS:
        raise ValueError(f"{what}: unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def _bundled(profile: str, split: str, seed: int) -> Path | None:
    """The trees shipped in the package for this seed, if there are any."""
    if seed == BUNDLED_SEED and profile in BUNDLED_PROFILES and (p := bundled_path(profile, split)).exists():
        return p
    return None


def _cached_path(profile: str, split: str, seed: int) -> Path | None:
    """Where the trees of one seed are (or will be) read from; None before the spec is checked."""
    return _bundled(profile, split, seed) or _cache_file(profile, split, seed, load_params().version)


def _cache_file(profile: str, split: str, seed: int, version) -> Path:
    """The generated trees' file in the cache (one folder per simulator version)."""
    return cache_dir() / "trees" / f"sim{version}" / f"{profile}_{split}_seed{seed}.jsonl.gz"


def tree_file(profile: str, split: str, seed: int = BUNDLED_SEED, progress=False) -> Path:
    """Path of the simulated trees of ``profile``/``split`` for ``seed``, generating them if needed
    (``progress``: True for a bar of its own, or a tqdm bar to advance)."""
    if (bundled := _bundled(profile, split, seed)) is not None:
        return bundled
    params = load_params()
    # checked before the cache folder is made: a typo must not leave folders or start a generation
    _check_profile_split(profile, split, params, f"sim:{profile}:{split}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"sim:{profile}:{split}: seed {seed} is not in [0, {MAX_SEED}]")
    out = _cache_file(profile, split, seed, params.version)
    if not out.exists():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError, PermissionError) as exc:
            raise ValueError(f"cache folder {cache_dir()} ($TRIM_RL_CACHE, default ~/.cache/trim_rl): cannot create "
                             f"{out.parent} for the generated trees ({exc.strerror})") from None
        generate_file(profile, split, seed, out, params=params, progress=progress)
    return out


def parse_seeds(text: str, spec: str) -> list[int]:
    """``7``, ``0-3`` or ``0,2,5`` (ranges inclusive) as a list of seeds, each in [0, 2**32 - 1],
    none twice, at most ``MAX_SPEC_SEEDS`` of them (checked before any range is expanded)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                if hi - lo + 1 + len(seeds) > MAX_SPEC_SEEDS:
                    raise _TooMany(hi - lo + 1 + len(seeds))
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except _TooMany as exc:
        raise ValueError(f"tree spec {spec!r}: {exc.n} seeds, at most {MAX_SPEC_SEEDS} (each seed is a tree file "
                         "generated and held in memory)") from None
    except ValueError:
        raise ValueError(f"tree spec {spec!r}: the seed part must be N, A-B or a comma list of those") from None
    if len(seeds) > MAX_SPEC_SEEDS:
        raise ValueError(f"tree spec {spec!r}: {len(seeds)} seeds, at most {MAX_SPEC_SEEDS} (each seed is a tree "
                         "file generated and held in memory)")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ValueError(f"tree spec {spec!r}: seed {bad[0]} is not in [0, {MAX_SEED}]")
    refuse_repeats(seeds, lambda s: f"tree spec {spec!r}: seed {s} is named twice (its trees would count twice)")
    return seeds


class _TooMany(Exception):
    def __init__(self, n: int):
        self.n = n


def _parse_spec(spec: str) -> tuple[str, str, list[int]] | Path:
    """A tree spec checked without generating or creating anything: (profile, split, seeds) or a file."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"tree spec {spec!r}: expected a file path or sim:PROFILE:SPLIT[:SEEDS]")
    if spec.startswith("sim:"):
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"tree spec {spec!r}: use sim:PROFILE:SPLIT[:SEEDS]")
        seeds = parse_seeds(parts[3], spec) if len(parts) == 4 else [BUNDLED_SEED]
        params = load_params()
        _check_profile_split(parts[1], parts[2], params, f"tree spec {spec!r}")
        per_seed = _trees_per_seed(parts[1], parts[2])
        max_nodes = params.profiles[parts[1]].max_nodes
        gb = len(seeds) * per_seed * max_nodes / 2 * FLAT_BYTES_PER_NODE * 2 / 1e9
        if gb > MAX_SPEC_GB:
            raise ValueError(f"tree spec {spec!r}: {len(seeds)} seeds x {per_seed} trees, about {gb:.1f} GB in memory "
                             f"(at most {MAX_SPEC_GB} GB); use fewer seeds")
        return parts[1], parts[2], seeds
    return existing_file(spec, f"tree file {spec} does not exist (or use sim:PROFILE:SPLIT[:SEEDS])",
                         f"tree file {spec} is a folder; give a .jsonl or .jsonl.gz file")


@functools.cache
def _trees_per_seed(profile: str, split: str) -> int:
    from trim_rl.sim.profiles import profile_problems

    prof = load_params().profiles[profile]
    return len(profile_problems(prof, split).problems) * int(prof.draws[split])


def check_tree_spec(spec: str | list[str], flag: str | None = None) -> None:
    """Raise the error :func:`resolve_tree_spec` would, without generating any trees (the message
    starts with ``flag`` when given)."""
    try:
        for s in spec if isinstance(spec, (list, tuple)) else [spec]:
            _parse_spec(s)
    except (ValueError, FileNotFoundError) as exc:
        if flag is None:
            raise
        raise type(exc)(f"{flag}: {exc}") from None


def resolve_tree_spec(spec: str | list[str], progress: bool = False) -> list[Path]:
    """A tree file path, ``sim:PROFILE:SPLIT[:SEEDS]`` for simulated trees (SEEDS: ``N``, ``A-B`` or
    ``N,M,...``; one file per seed), or a list of those.  Every spec of a list is checked before
    any trees are generated."""
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    parsed = [_parse_spec(s) for s in specs]
    # every seed still to generate, under one bar: "draw i of N" (a draw: one seed's tree file)
    missing = [(p[0], p[1], seed) for p in parsed if not isinstance(p, Path) for seed in p[2]
               if not _cached_path(p[0], p[1], seed).exists()]
    bar = None
    if progress and missing:
        from tqdm import tqdm

        total = sum(_trees_per_seed(profile, split) for profile, split, _ in missing)
        bar = tqdm(total=total, unit="tree", desc="generating trees (once; cached)", dynamic_ncols=True)
    out: list[Path] = []
    try:
        for p in parsed:
            if isinstance(p, Path):
                out.append(p)
                continue
            profile, split, seeds = p
            for seed in seeds:
                if bar is not None and (profile, split, seed) in missing:
                    i = missing.index((profile, split, seed)) + 1
                    bar.set_description(f"generating trees (once; cached): draw {i} of {len(missing)}, "
                                        f"sim:{profile}:{split}:{seed}")
                out.append(tree_file(profile, split, seed, bar if bar is not None else progress))
    finally:
        if bar is not None:
            bar.close()
    return out


def generate_trees(*specs: str | list[str] | None, progress: bool = False) -> None:
    """Generate every simulated tree file the specs name that is not cached yet, under one bar
    ("draw i of N"), so that a command loading several splits shows one bar, not one per split."""
    flat = [s for spec in specs if spec is not None for s in (spec if isinstance(spec, (list, tuple)) else [spec])]
    resolve_tree_spec(flat, progress)


def load_trees(spec: str | list[str], progress: bool = False) -> FlatTrees:
    """Trees of a spec (see :func:`resolve_tree_spec`) as one :class:`~trim_rl.data.flat.FlatTrees`.

    Simulated trees (``sim:...``) go through the flat cache (:mod:`trim_rl.data.flat_cache`), so
    they are parsed once; tree files named directly are read and validated on every call."""
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    check_tree_spec(specs)
    parts = []
    for s in specs:
        for p in resolve_tree_spec(s, progress):
            parts.append(load_flat_cached(p) if str(s).startswith("sim:") else load_flat(p))
    if not parts:
        raise ValueError(f"tree spec {spec!r} names no trees")
    return concat(parts)
