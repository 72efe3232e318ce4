"""Shared pieces of the command lines: a parser whose errors are one line, checked number types, the
refusal of a value given twice, the flags that several commands share (each defined once: name, type,
default, help, the help's ``(default N)`` written from the default itself), and how a command parses its
flags and runs under :func:`trim_rl.cli_errors.run_cli`."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (exit code 2), without the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def int_at_least(lo: int):
    """An argparse type: an integer >= ``lo`` (a negative --limit would slice from the end of a list)."""
    return int_between(lo, None)


def _checked(convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str, name: str):
    """An argparse type: ``convert(text)`` where it converts and ``accept`` takes the value; otherwise
    ``expected WHAT, got TEXT``; ``name`` is the type's name."""

    def parse(text: str):
        try:
            v = convert(text)
            ok = accept(v)
        except ValueError:
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = name
    return parse


def number_in(lo: float, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False,
              what: str | None = None):
    """An argparse type: a finite number in the interval from ``lo`` to ``hi`` (each end closed unless
    ``*_open``); ``what`` names it in the error (default: the interval)."""
    if what is None:
        if hi == math.inf:
            what = f"a finite number {'>' if lo_open else '>='} {lo:g}"
        else:
            what = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def within(v: float) -> bool:
        return math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return _checked(float, within, what, what.removeprefix("a "))


#: a finite number >= 0
nonneg_float = number_in(0.0)
#: a finite number > 0 (a price, a budget in %)
positive_float = number_in(0.0, lo_open=True)
#: a number in [0, 1]
fraction = number_in(0.0, 1.0)

MAX_SEED = 2**32 - 1  # what numpy's legacy seeding, torch and scikit-learn's random_state all accept


def int_between(lo: int, hi: int | None, what: str | None = None):
    """An argparse type: an integer in [``lo``, ``hi``] (``hi`` keeps a size within memory or time; None:
    no upper bound); ``what`` names it in the error (default: the interval)."""
    what = what or (f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]")
    return _checked(int, lambda v: lo <= v and (hi is None or v <= hi), what, what.removeprefix("an "))


#: a random seed: an integer in [0, 2**32 - 1]
seed_int = int_between(0, MAX_SEED, f"a seed, an integer in [0, {MAX_SEED}]")
#: a TCP port, 0 (any free port) to 65535
port_number = int_between(0, 65535)


def output_file(text: str) -> str:
    """An argparse type: a file to write, refused at once when it is a folder or a part of its path is a
    file (rather than after the work that produces it)."""
    from pathlib import Path

    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
    if p.exists() and not p.is_file():  # a device or a pipe would be replaced by a regular file
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular file")
    import os

    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r}: {str(parent)!r} is a file, not a folder")
            # written as a temporary file beside it, then renamed: the folder must take new files
            if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
                raise argparse.ArgumentTypeError(f"{text!r}: not writable")
            break
    return text


def refuse_repeats(items: Iterable, message: Callable[[Any], str], error: type[Exception] = ValueError) -> None:
    """Raise ``error(message(item))`` for the first (smallest) item that ``items`` holds more than once."""
    items = list(items)
    twice = sorted({x for x in items if items.count(x) > 1})
    if twice:
        raise error(message(twice[0]))


# flags made from a typed config's fields (as vLLM's EngineArgs.add_cli_args)


def flag(help: str, group: str | None = None, **kwargs) -> dict:
    """A dataclass field's ``metadata``: the flag :func:`add_field_flags` makes of it: ``--NAME`` (or
    ``flag=``), its ``help``, the title of its argument ``group`` and ``add_argument``'s other keywords
    (type, metavar, nargs, choices, action, required); its default is the field's."""
    return {"cli": {"help": help, "group": group, **kwargs}}


def add_field_flags(parser, cls, groups: dict | None = None, names: Iterable[str] | None = None) -> dict:
    """Add a flag for each field of the dataclass ``cls`` whose metadata is a :func:`flag` (or for the
    fields ``names``, in that order), each in its argument group (created on first use, or taken from
    ``groups`` by title; none: ``parser`` itself); returns the groups by title."""
    groups = {} if groups is None else groups
    by_name = {f.name: f for f in dataclasses.fields(cls) if "cli" in f.metadata}
    for name in by_name if names is None else names:
        f = by_name[name]
        kwargs = dict(f.metadata["cli"])
        title = kwargs.pop("group")
        if title is None:
            where = parser
        elif title in groups:
            where = groups[title]
        else:
            where = groups[title] = parser.add_argument_group(title)
        if not kwargs.get("required") and "default" not in kwargs:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            kwargs["default"] = list(default) if kwargs.get("action") == "append" else default
        where.add_argument(kwargs.pop("flag", "--" + f.name.replace("_", "-")), **kwargs)
    return groups


# flags that several command lines share

DEFAULT_AGENT = "trim_agg"
DEFAULT_ENV = "math500"
DEFAULT_PROBLEMS = "gsm8k"
DEFAULT_BOOTSTRAP = 1000
HYPERPARAMS_HELP = ("override agent YAML entries, e.g. learning_rate:1e-4 total_timesteps:50000 "
                    "policy_kwargs.net_arch:[32,32] policy_iteration.rounds:4 (values parsed as YAML 1.2)")


def with_default(text: str, default: Any) -> str:
    """``TEXT (default DEFAULT)``: a flag's help, its default written from the value itself."""
    return f"{text} (default {default})"


def add_command(sub, name: str, run: Callable, help: str) -> argparse.ArgumentParser:
    """The sub-command ``name`` of the subparsers ``sub``; its ``--help`` description is the docstring of
    ``run``, the function that runs it, so that the text lives once, next to the code."""
    return sub.add_parser(name, help=help, description=inspect.getdoc(run))


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None, body: Callable[[argparse.Namespace], int]) -> int:
    """Parse ``argv`` and run ``body`` on the flags under :func:`~trim_rl.cli_errors.run_cli` (user errors:
    one line naming ``parser.prog``, exit code 2)."""
    from trim_rl.cli_errors import run_cli

    args = parser.parse_args(argv)
    return run_cli(parser.prog, lambda: body(args))


def add_seed(parser, what: str, note: str = "") -> None:
    """``--seed``, 0 to 2**32 - 1 (what numpy, torch and scikit-learn all take), default 0; ``note``
    follows the default in the help."""
    parser.add_argument("--seed", type=seed_int, default=0, help=f"{what}, 0 to 2**32 - 1 (default 0{note})")


def add_port(parser, default: int, what: str = "port") -> None:
    """``--port`` of a server the command starts (0: any free port)."""
    parser.add_argument("--port", type=port_number, default=default, help=f"{what} (default {default}; 0: any free port)")


def add_host_port(parser, port: int) -> None:
    """``--host`` and ``--port`` of a server the command runs (default: only this machine)."""
    host = "127.0.0.1"
    parser.add_argument("--host", default=host, help=with_default("address to listen on", host))
    add_port(parser, port)


def add_problems(parser, lead: str = "") -> None:
    """``--problems``: a shipped benchmark or a JSON Lines file (:func:`trim_rl.data.problems.load_problems`)."""
    parser.add_argument("--problems", default=DEFAULT_PROBLEMS,
                        help=with_default(f"{lead}math500, gsm8k, aime, aime24, amc23, olympiadbench, minerva, or a "
                                          ".jsonl file with problem/question and answer fields", DEFAULT_PROBLEMS))


def add_limit(parser, type=int, default: int | None = None, where: str = "") -> None:
    """``--limit``: only the first N problems (``where`` says of what)."""
    text = f"only the first N problems{where}"
    parser.add_argument("--limit", type=type, default=default,
                        help=text if default is None else with_default(text, default))


def add_max_tokens(parser, default: int, type=int, where: str = "") -> None:
    """``--max-tokens``: the most tokens one step may generate."""
    parser.add_argument("--max-tokens", type=type, default=default, help=with_default(f"most tokens per step{where}", default))


def add_max_steps(parser, default: int, type=int, where: str = "") -> None:
    """``--max-steps``: the most steps of one solution."""
    parser.add_argument("--max-steps", type=type, default=default,
                        help=with_default(f"most steps per solution{where}", default))


def add_quiet(parser, also: str = "") -> None:
    """``--quiet``: no progress bar (``also``: what else it leaves out)."""
    parser.add_argument("--quiet", action="store_true", help=f"no progress bar{also}")


def add_bootstrap(parser, what: str, most: int) -> None:
    """``--bootstrap``: resamples of the evaluation's intervals, 1 to ``most``."""
    parser.add_argument("--bootstrap", type=int_between(1, most), default=DEFAULT_BOOTSTRAP,
                        help=f"bootstrap resamples {what} (default {DEFAULT_BOOTSTRAP}, at most {most})")


def add_agent_env(parser) -> None:
    """``--agent`` and ``--env`` of a command that trains: YAML files or packaged names."""
    parser.add_argument("--agent", default=DEFAULT_AGENT,
                        help=with_default("agent YAML (or packaged name) to train", DEFAULT_AGENT))
    parser.add_argument("--env", default=DEFAULT_ENV,
                        help=with_default("env YAML (or packaged name): trees and budgets", DEFAULT_ENV))


def add_hyperparams(parser, help: str = HYPERPARAMS_HELP) -> None:
    """``--hyperparams KEY:VALUE ...``: overrides of the agent YAML."""
    parser.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY:VALUE", help=help)
