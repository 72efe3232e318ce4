"""``python -m trim_rl.data merge OUT SHARD...``: join shard tree files (see :mod:`trim_rl.data.merge`)."""

from __future__ import annotations

import json
import signal
import sys

from trim_rl.argtypes import OneLineParser, add_command
from trim_rl.data.merge import merge_shards


def _on_sigterm(signum, frame):  # unwind, so the temporary output file is removed
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, prog: str = "python -m trim_rl.data") -> int:
    ap = OneLineParser(prog=prog, description="Tools for trajectory-tree files.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = add_command(sub, "merge", merge, "validate shard tree files and join them into one")
    m.add_argument("out", help="the merged tree file (.jsonl or .jsonl.gz)")
    m.add_argument("shards", nargs="+", help="the shard tree files")
    m.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return merge(args)
    except (ValueError, OSError) as exc:  # TreeFormatError is a ValueError: file, line and field named
        print(f"{prog} {args.cmd}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130


def merge(args) -> int:
    """Join the tree files of a sharded collection (collect --shard I/N) into OUT. Every tree is
    validated; a problem id met twice and shards collected with other settings are refused by name; OUT
    is written atomically."""
    print(json.dumps(merge_shards(args.out, args.shards, args.force)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
