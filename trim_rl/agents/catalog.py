"""The built-in policies by name: one table that evaluation, the paper report, live decoding and the
server all read.

Each :class:`PolicyEntry` gives a name its level, display label, factory and sweep grid:

* ``level``: ``step`` for the families ``evaluate.py`` sweeps over the trees' step walks (TRIM-Thr,
  always-weak / -strong, the random step router, and the two oracles as references), ``query`` for
  the query-level routers of :mod:`trim_rl.agents.query` (fitted on train/val trees, one decision per
  problem).
* ``factory(setting, seed)``: the step policy at one setting (``thr:K`` -> ``ThresholdPolicy(K)``);
  None where the name is no per-step policy (the oracles read the trees, query routers score problems).
* ``grid`` and ``sweep``: the settings an evaluation sweeps and how it turns them into operating
  points (``rollout``: the factory's policy rolled over the trees at each setting; any other value
  names a dedicated sweep of :mod:`trim_rl.evaluation.sweep` / :mod:`trim_rl.evaluation.query_sweep`).
* ``decode``: how live decoding runs it: ``hybrid`` (a router decides each step) or, for the two fixed
  modes, ``weak-only`` / ``strong-only``, decoded without a router or scorer calls (offline the same
  entries are policies that keep / regenerate every step the tree allows).

Canonical names are ``always-weak`` / ``always-strong`` (the cost unit everywhere is "% of
always-strong's strong tokens"); ``weak-only`` / ``strong-only`` are accepted aliases everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from trim_rl.agents.baselines import ConstantPolicy, RandomStepPolicy, ThresholdPolicy

STEP, QUERY = "step", "query"
HYBRID, WEAK_ONLY, STRONG_ONLY = "hybrid", "weak-only", "strong-only"

#: TRIM-Thr's thresholds and the random step router's probabilities an evaluation sweeps
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(21))
RANDOM_P = tuple(round(0.1 * i, 1) for i in range(11))
#: the share of problems a query-level router sends to the strong model, per operating point
FRACTIONS = tuple(round(0.05 * i, 2) for i in range(21))
#: most operating points of an oracle's frontier (budgets in order of the cost of fixing a problem)
ORACLE_POINTS = 80


@dataclass(frozen=True)
class PolicyEntry:
    """One built-in policy (see the module docstring for the fields)."""

    name: str
    level: str
    label: str
    sweep: str
    grid: tuple = ()
    factory: Callable[[Any, int], Any] | None = None
    param: str | None = None  # NAME:VALUE loads one policy (thr:K, random:P); None: the bare name loads
    aliases: tuple[str, ...] = ()
    decode: str = HYBRID

    @property
    def spec(self) -> str:
        """How ``load_policy`` spells it: ``thr:K``, ``always-weak``, ..."""
        return f"{self.name}:{self.param}" if self.param else self.name

    def make(self, setting: Any = None, seed: int = 0):
        """The step policy at ``setting`` (ValueError for an entry that is no step policy)."""
        if self.factory is None:
            raise ValueError(f"policy {self.name!r} is no step policy to load: it is evaluated from the trees "
                             "(evaluate.py --policies)")
        return self.factory(setting, seed)


POLICIES: tuple[PolicyEntry, ...] = (
    PolicyEntry("thr", STEP, "TRIM-Thr", "rollout", THRESHOLDS, lambda k, seed: ThresholdPolicy(k), "K"),
    PolicyEntry("always-weak", STEP, "always-weak", WEAK_ONLY, ("weak",), lambda _, seed: ConstantPolicy(0),
                aliases=(WEAK_ONLY,), decode=WEAK_ONLY),
    PolicyEntry("always-strong", STEP, "always-strong", STRONG_ONLY, ("strong",), lambda _, seed: ConstantPolicy(1),
                aliases=(STRONG_ONLY,), decode=STRONG_ONLY),
    PolicyEntry("random", STEP, "random step router", "rollout", RANDOM_P, lambda p, seed: RandomStepPolicy(p, seed),
                "P"),
    PolicyEntry("oracle-step", STEP, "step-level oracle", "oracle-step"),
    PolicyEntry("oracle-query", STEP, "query-level oracle", "oracle-query"),
    PolicyEntry("sw", QUERY, "RouteLLM SW ranking", "learned", FRACTIONS),
    PolicyEntry("mf", QUERY, "RouteLLM matrix factorisation", "learned", FRACTIONS),
    PolicyEntry("clf", QUERY, "RouteLLM classifier", "learned", FRACTIONS),
    PolicyEntry("automix", QUERY, "AutoMix-PRM (final step)", "automix-final", FRACTIONS),
    PolicyEntry("automix-min", QUERY, "AutoMix-PRM (min step)", "automix-min", FRACTIONS),
    PolicyEntry("random-query", QUERY, "random query router", "random-query", FRACTIONS),
    PolicyEntry("smoothie", QUERY, "Smoothie (label-free)", "smoothie"),
)

_BY_NAME: dict[str, PolicyEntry] = {e.name: e for e in POLICIES}
_ALIASES: dict[str, str] = {a: e.name for e in POLICIES for a in e.aliases}


def names(level: str | None = None) -> tuple[str, ...]:
    """Canonical names in table order (of one level when given)."""
    return tuple(e.name for e in POLICIES if level is None or e.level == level)


def valid_names(level: str | None = None) -> str:
    """The names an error lists: canonical ones with their aliases in brackets."""
    return ", ".join(e.name + (f" ({', '.join(e.aliases)})" if e.aliases else "")
                     for e in POLICIES if level is None or e.level == level)


def find(name: str) -> PolicyEntry | None:
    """The entry of a name or alias; None for anything else (a checkpoint folder, a typo)."""
    return _BY_NAME.get(_ALIASES.get(name, name))


def unknown(name: str, valid: str, kind: str = "policy") -> ValueError:
    """The one error of a name that is not a policy: ``unknown policy 'x'; valid: ...``."""
    return ValueError(f"unknown {kind} {name!r}; valid: {valid}")


def lookup(name: str, level: str | None = None) -> PolicyEntry:
    """The entry of a name or alias (of ``level`` when given); one ValueError listing the valid names."""
    e = find(name)
    if e is None or (level is not None and e.level != level):
        kind = {STEP: "step-level policy", QUERY: "query-level router"}.get(level or "", "policy")
        raise unknown(name, valid_names(level), kind)
    return e


def canonical(name: str) -> str:
    """A built-in name's canonical spelling (``weak-only`` -> ``always-weak``); ValueError when unknown."""
    return lookup(name).name


def is_builtin(name: str, level: str | None = None) -> bool:
    """Whether ``name`` (or an alias) is a built-in policy (of ``level``)."""
    e = find(name)
    return e is not None and (level is None or e.level == level)


def decode_mode(spec: str) -> str:
    """How live decoding runs a ``--policy`` spec: ``weak-only`` / ``strong-only`` for the two fixed
    modes (no router; weak-only makes no scorer call, strong-only no weak-model call), else ``hybrid``."""
    e = find(str(spec))
    return e.decode if e is not None else HYBRID


class _Labels(Mapping):
    """Canonical name -> display label of one level; lookups take aliases too (``weak-only`` is in it)."""

    def __init__(self, level: str):
        self._level = level

    def __getitem__(self, name: str) -> str:
        e = find(name)
        if e is None or e.level != self._level:
            raise KeyError(name)
        return e.label

    def __iter__(self) -> Iterator[str]:
        return iter(names(self._level))

    def __len__(self) -> int:
        return len(names(self._level))

    def __repr__(self) -> str:
        return repr(dict(self))


#: display labels of the step-level families and of the query-level routers (views of the table)
STEP_LABELS: Mapping[str, str] = _Labels(STEP)
QUERY_LABELS: Mapping[str, str] = _Labels(QUERY)


def label(name: str) -> str:
    """A built-in policy's display label; any other name (a checkpoint family) is its own label."""
    e = find(name)
    return e.label if e is not None else name
