"""``python -m trim_rl.export RUN_DIR --out checkpoints/NAME``: install a run's policy as a deployment checkpoint
(the command line of :func:`trim_rl.api.export`; :func:`trim_rl.training.exporting.export_run` says what it
writes and refuses)."""

from __future__ import annotations

import sys

from trim_rl.argtypes import OneLineParser
from trim_rl.cli_errors import run_cli


def main(argv: list[str] | None = None, prog: str = "python -m trim_rl.export") -> int:
    ap = OneLineParser(prog=prog,
                       description="Install a trained run's policy as a deployment checkpoint: "
                                   "model.safetensors + policy.json (observation builder, budget, price, "
                                   "network, versions, sha256), loadable with torch alone "
                                   "(trim_rl.load_policy).  TRIM-POMDP runs: policy.json + policy.npz.")
    ap.add_argument("run_dir", help="run folder written by train.py")
    ap.add_argument("--out", required=True,
                    help="checkpoint folder to write: absent, empty or an older checkpoint holding nothing else (replaced "
                         "atomically); any other folder, or a checkpoint with other files in it, is refused")
    ap.add_argument("--which", choices=["best", "last"], default="best",
                    help="best: the run's finished, calibrated policy (default); last: PPO's last actor, uncalibrated")
    args = ap.parse_args(argv)
    return run_cli(prog, lambda: _main(args))


def _main(args) -> int:
    # trim_rl.api imports torch
    from trim_rl import api

    print(f"checkpoint: {api.export(args.run_dir, args.out, args.which)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
