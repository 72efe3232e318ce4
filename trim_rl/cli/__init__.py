"""``trim-rl``: one command for every tool (``trim-rl train ...`` is ``train.py ...``, and so on)."""

from __future__ import annotations

import sys

COMMANDS = {
    "train": ("trim_rl.cli.train", "train policies for a cost budget (train.py)"),
    "evaluate": ("trim_rl.cli.evaluate", "evaluate policies on held-out trees (evaluate.py)"),
    "export": ("trim_rl.cli.export", "install a run's policy as a deployment checkpoint"),
    "sim": ("trim_rl.sim.__main__", "generate simulated trees, calibrate and report the simulator"),
    "live": ("trim_rl.live.cli", "decode, collect trees or serve against real inference servers"),
    "data": ("trim_rl.data.__main__", "tree files: validate, merge shards"),
    "bench": ("trim_rl.bench", "speed benchmarks"),
    "demo": ("trim_rl.cli.demo", "the main job: train a budget grid, export, evaluate"),
    "headroom": ("trim_rl.evaluation.headroom", "the exact-value yardstick of the agg features"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: trim-rl COMMAND [ARGS...]\n\ncommands:\n{rows}\n\n'trim-rl COMMAND --help' explains each command's flags."


def main(argv: list[str] | None = None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"trim-rl: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest, prog=f"trim-rl {name}") or 0)


if __name__ == "__main__":
    sys.exit(main())
