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


def _finite_float(text: str, zero_ok: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v < 0 or (v == 0 and not zero_ok):
        raise argparse.ArgumentTypeError(f"expected a finite number {'>=' if zero_ok else '>'} 0, got {text!r}")
    return v


def nonneg_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    return _finite_float(text, zero_ok=True)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (a price, a budget in %)."""
    return _finite_float(text, zero_ok=False)


MAX_SEED = 2**32 - 1  # what numpy's legacy seeding, torch and scikit-learn's random_state all accept


def seed_int(text: str) -> int:
    """An argparse type: a random seed, an integer in [0, 2**32 - 1]."""
    try:
        v = int(text)
    except ValueError:
        v = None
    if v is None or not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed, an integer in [0, {MAX_SEED}], got {text!r}")
    return v


def int_between(lo: int, hi: int | None):
    """An argparse type: an integer in [``lo``, ``hi``] (``hi`` keeps a size within memory or time; None:
    no upper bound)."""
    what = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"

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


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    return int_between(0, 65535)(text)


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


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
