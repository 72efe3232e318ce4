"""Reading and writing trajectory-tree files (``.jsonl`` or ``.jsonl.gz``).

Reading validates every tree (:func:`trim_rl.data.schema.validate_tree`) and reports the file, line
and field of the first violation.  Writing goes to a temporary file beside the target and is renamed
at the end, so a failed write never leaves a half-written file behind.
"""

from __future__ import annotations

import gzip
import io
import json
import warnings
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

from trim_rl.data.errors import TreeFormatError
from trim_rl.data.schema import CheckedTree, validate_tree
from trim_rl.fsutil import atomic_output, existing_file

__all__ = ["iter_json_lines", "iter_trees", "read_trees", "atomic_output", "dumps_line", "write_json_lines",
           "write_trees"]


def _is_gz(path: str | os.PathLike) -> bool:
    return str(path).endswith(".gz")


def iter_json_lines(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, decoded_object)`` for each non-blank line of a JSON Lines file.

    Raises :class:`TreeFormatError` naming the line for invalid JSON, a truncated or corrupt gzip
    stream, or bytes that are not UTF-8.
    """
    path = existing_file(path, f"{path}: no such file", f"{path}: is a directory, not a JSON Lines file",
                         IsADirectoryError)
    opener = gzip.open if _is_gz(path) else open
    line_no = 0
    try:
        with opener(path, "rb") as fh:
            for raw in fh:
                line_no += 1
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise TreeFormatError(path, line_no, "<line>", f"not valid UTF-8 ({exc.reason})") from None
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise TreeFormatError(path, line_no, "<line>", f"invalid JSON: {exc.msg} at column {exc.colno}") from None
                except RecursionError:
                    raise TreeFormatError(path, line_no, "<line>", "JSON nested too deeply") from None
                except ValueError as exc:  # an integer over Python's int-string limit (4300 digits)
                    hit = _long_integer(text)
                    if hit is None:
                        raise TreeFormatError(path, line_no, "<line>", f"invalid JSON: {exc}") from None
                    raise TreeFormatError(path, line_no, hit[0], f"an integer of {hit[1]} digits, too long to "
                                          f"read (at most {sys.get_int_max_str_digits()})") from None
                yield line_no, obj
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)) or not _is_gz(path):
            raise
        raise TreeFormatError(
            path, line_no + 1, "<gzip stream>", f"truncated or corrupt gzip data after line {line_no} ({exc})"
        ) from None


class _LongInt:
    def __init__(self, digits: int):
        self.digits = digits


def _long_integer(text: str) -> tuple[str, int] | None:
    """Field path and length of the first integer in ``text`` over the int-string limit (the line is
    decoded again only when it failed, so ordinary lines keep the fast C decoder)."""
    limit = sys.get_int_max_str_digits()

    def parse_int(s: str):
        digits = len(s.lstrip("-"))
        return _LongInt(digits) if limit and digits > limit else int(s)

    def find(obj, where: str):
        if isinstance(obj, _LongInt):
            return where or "<line>", obj.digits
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
        for key, value in items:
            hit = find(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else key)
            if hit:
                return hit
        return None

    try:
        return find(json.loads(text, parse_int=parse_int), "")
    except (ValueError, RecursionError):
        return None


def iter_trees(path: str | os.PathLike) -> Iterator[tuple[dict, CheckedTree]]:
    """Yield ``(raw_tree, checked_tree)`` for every line of a tree file, validating each.  A file with
    no trees is an error naming it; a problem id seen twice (legal, but usually a file appended to
    twice) is a warning naming the lines."""
    seen: dict[str, int] = {}
    repeated: list[tuple[str, int, int]] = []
    for line_no, obj in iter_json_lines(path):
        tree = validate_tree(obj, path, line_no)
        pid = tree.header["problem_id"]
        if pid in seen:
            repeated.append((pid, seen[pid], line_no))
        else:
            seen[pid] = line_no
        yield obj, tree
    if not seen:
        raise TreeFormatError(path, None, "<file>", "no trees in this file")
    if repeated:
        pid, first, again = repeated[0]
        warnings.warn(f"{path}:{again}: problem_id {pid!r} already appears on line {first} "
                      f"({len(repeated)} repeated ids in this file)", UserWarning, stacklevel=2)


def read_trees(path: str | os.PathLike) -> list[dict]:
    """Read and validate a tree file; return the decoded trees."""
    return [raw for raw, _ in iter_trees(path)]


def dumps_line(obj: Any) -> str:
    """Compact, key-order-preserving JSON for one line."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def write_json_lines(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Atomically write JSON Lines (gzip when the name ends in ``.gz``, with a fixed header so the
    same rows give the same bytes).  Returns the number of rows written."""
    count = 0
    with atomic_output(path) as raw:
        if _is_gz(path):
            stream: IO[bytes] = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        else:
            stream = raw
        with io.TextIOWrapper(stream, encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(dumps_line(row))
                fh.write("\n")
                count += 1
    return count


def write_trees(path: str | os.PathLike, trees: Iterable[dict], validate: bool = True) -> int:
    """Atomically write trees to ``path``, validating each first (a bad tree raises and nothing is
    written).  Returns the number of trees written."""

    def checked():
        for i, tree in enumerate(trees):
            if validate:
                validate_tree(tree, f"{path} (tree to write)", i + 1)
            yield tree

    return write_json_lines(path, checked())
