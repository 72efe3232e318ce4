"""Shared pieces of the command lines: a parser whose errors are one line, and checked number types."""

from __future__ import annotations

import argparse
import math


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (exit code 2), without the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def int_at_least(lo: int):
    """An argparse type: an integer >= ``lo`` (a negative --limit would slice from the end of a list)."""
    return int_between(lo, None)


def number_in(lo: float, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False,
              what: str | None = None):
    """An argparse type: a finite number in the interval from ``lo`` to ``hi`` (each end closed unless
    ``*_open``); ``what`` names it in the error (default: the interval)."""
    if what is None:
        if hi == math.inf:
            what = f"a finite number {'>' if lo_open else '>='} {lo:g}"
        else:
            what = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = what.removeprefix("a ")
    return parse


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

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = what.removeprefix("an ")
    return parse


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
