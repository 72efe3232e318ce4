"""``train.py`` / ``trim-rl train``: train routing policies from YAML configs.

A thin layer over the Python API: the flags become one call of :func:`trim_rl.api.train` (or
:func:`trim_rl.api.resume` for ``--resume``), which checks everything; this module prints what it
returns (``run: PATH`` lines on stdout, the summary table on stderr)."""

from __future__ import annotations

import argparse
import inspect
import shlex
import sys
import warnings

from trim_rl.argtypes import DEFAULT_AGENT, DEFAULT_ENV, OneLineParser, add_hyperparams
from trim_rl.cli_errors import run_cli
from trim_rl.configs import ConfigError
from trim_rl.live.online import add_live_flags, is_live_run, live_flags_given, live_settings
from trim_rl.training.checks import check_path_given, check_seed, check_workers
from trim_rl.training.run import AlreadyFinished, Interrupted
from trim_rl.training.summary import print_summary

PROG = "train.py"
DEFAULT_RUNS = "runs"
# what a new run takes; a resumed run has its own (given with --resume, they are refused, not ignored)
NEW_RUN_ONLY = {"agent": DEFAULT_AGENT, "env": DEFAULT_ENV, "seed": 0, "runs": DEFAULT_RUNS, "workers": None}


def _argtype(check, flag: str):
    """An argparse type from a check of :mod:`trim_rl.training.checks` (text to a number; the API runs the
    same check on the number)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = text  # refused by the check, which says what it expects
        try:
            return check(value, flag)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{flag}: ")) from None

    parse.__name__ = flag
    return parse


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    ap = OneLineParser(prog=prog, description=inspect.getdoc(_main))
    ap.add_argument("--agent", default=None,
                    help=f"agent YAML, or the name of a packaged one (trim_agg, trim_seq, trim_agg_budget, trim_pomdp, "
                         f"trim_agg_scratch; default {DEFAULT_AGENT})")
    ap.add_argument("--env", default=None,
                    help=f"env YAML (trees, calibration trees, default budgets), or a packaged name (default {DEFAULT_ENV})")
    target = ap.add_argument_group("what to train for (one of these; default: the env YAML's budget)")
    target.add_argument("--budget", type=float, default=None, metavar="PCT",
                        help="strong-token spend as a %% of always-strong's on the calibration trees, e.g. 15")
    target.add_argument("--budget-grid", nargs="*", type=float, default=None, metavar="PCT",
                        help="one policy per budget, one process per budget on all cores; with no values: the env "
                             "YAML's budget_grid")
    target.add_argument("--lam", type=float, default=None,
                        help="expert: a fixed price of one strong token (in correct answers) instead of a budget")
    target.add_argument("--lam-grid", nargs="*", type=float, default=None, metavar="LAM",
                        help="expert: one policy per price; with no values: the env (or POMDP agent) YAML's lam_grid")
    add_hyperparams(ap)
    ap.add_argument("--seed", type=_argtype(check_seed, "--seed"), default=None,
                    help="seed of training (trees drawn, network init, PPO), an integer in [0, 2**32 - 1]; default 0")
    ap.add_argument("--resume", default=None, metavar="RUN_DIR",
                    help="continue an interrupted run from its saved state (model.zip + state.json), finish one that "
                         "stopped before its export, or extend a finished one with --hyperparams total_timesteps:N; "
                         "its config is used (a finished run with nothing to do: 'already finished', exit 0)")
    ap.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                    help="start PPO's actor from an exported TRIM-Agg / TRIM-Seq checkpoint folder instead of the "
                         "recipe's earlier stages; its observation and network must match the agent YAML")
    ap.add_argument("--runs", default=None, help=f"root folder of run folders (default {DEFAULT_RUNS})")
    ap.add_argument("--workers", type=_argtype(check_workers, "--workers"), default=None,
                    help="processes for a grid, at least 1 (default: min(number of budgets, CPU cores); never more "
                         "than the number of budgets)")
    ap.add_argument("--verbose", type=int, default=0, choices=[0, 1], help="1 prints SB3's training log")
    ap.add_argument("--no-progress", action="store_true",
                    help="no progress bars (by default: one per stage on stderr, or one over budgets for a grid)")
    add_live_flags(ap)
    return ap


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    command = shlex.join([sys.executable, *(sys.argv if argv is None else [prog, *argv])])
    return run_cli(prog, lambda: _main(args, command, prog))


def _main(args, command: str, prog: str) -> int:
    """Train a step-level routing policy for a cost budget (TRIM-Agg / TRIM-Seq: exact-value policy
    iteration on the trees, then MaskablePPO; or TRIM-POMDP, fitted and solved).  A budget is the strong
    model's token spend as a % of always-strong's, measured on held-out trees; the trainer finds the price
    lambda itself.  Each run writes runs/<agent>/<env>__<target>__<seed>__<time>/ with config.yml,
    command.txt, git_hash.txt, TensorBoard events (tb/), each stage's policy (stages/), model.zip +
    state.json (for --resume), the finished checkpoint (policy/) and result.json (requested budget, lambda,
    spend measured).  With no arguments it trains the env YAML's default budget."""
    # trim_rl.api imports torch
    from trim_rl import api
    from trim_rl.live.http import EngineError
    from trim_rl.live.online import ServersFailed

    try:
        check_path_given(args.resume, "--resume")  # an empty --resume= is not "no --resume"
        online = args.live or (args.resume is not None and is_live_run(args.resume))
        if not online and live_flags_given(args):
            raise ConfigError(f"{live_flags_given(args)[0]}: applies to online training; add --live")
        if args.resume is not None:
            return _resume(api, args, command, prog, online)
        if args.live:
            run = api.train(args.agent or DEFAULT_AGENT, args.env, budget=args.budget, budget_grid=args.budget_grid,
                            lam=args.lam, lam_grid=args.lam_grid, seed=0 if args.seed is None else args.seed,
                            runs=args.runs or DEFAULT_RUNS, hyperparams=args.hyperparams, init_from=args.init_from,
                            workers=args.workers, progress=not args.no_progress, verbose=args.verbose,
                            command=command, live=live_settings(args))
            print(f"run: {run.path}")
            return 0
        new = {k: default if getattr(args, k) is None else getattr(args, k) for k, default in NEW_RUN_ONLY.items()}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", api.UnusedArgumentWarning)
                warnings.showwarning = lambda message, *rest, **kw: print(f"{prog}: {message}", file=sys.stderr)
                result = api.train(new["agent"], new["env"], budget=args.budget, budget_grid=args.budget_grid,
                                   lam=args.lam, lam_grid=args.lam_grid, seed=new["seed"], runs=new["runs"],
                                   hyperparams=args.hyperparams, init_from=args.init_from, workers=new["workers"],
                                   progress=not args.no_progress, verbose=args.verbose, command=command)
        except api.GridFailed as failed:
            for r in failed.results:
                print(f"run: {r.run_dir}" if not r.error else f"failed: {r.target.label}: {r.error}"
                      + (f" ({r.run_dir})" if r.run_dir else ""))
            print_summary([run.path for run in failed.runs])
            print(f"{prog}: {len(failed.failed)} of {len(failed.results)} runs failed: {failed}", file=sys.stderr)
            return 1
        runs = result if isinstance(result, list) else [result]
        for run in runs:
            print(f"run: {run.path}")
        print_summary([run.path for run in runs])
        return 0
    except Interrupted as exc:
        if exc.removed:
            print(f"{prog}: interrupted before the run had saved anything to resume; its folder {exc.run_dir} was "
                  f"removed (start the run again)", file=sys.stderr)
            return 130
        hint = f"resume with: {prog} --resume {exc.run_dir}" if exc.resumable else "it stopped before PPO's first " \
               "checkpoint; start it again"
        print(f"{prog}: interrupted; the run's state is saved in {exc.run_dir} ({hint})", file=sys.stderr)
        return 130
    except (ServersFailed, EngineError) as exc:  # servers, not usage: exit 1
        from trim_rl.live.online import servers_failed_line

        print(servers_failed_line(exc, prog), file=sys.stderr)
        return 1


def _resume(api, args, command: str, prog: str, online: bool) -> int:
    """``--resume RUN``: only ``--hyperparams`` may come with it (a run keeps its own config)."""
    given = [f"--{k.replace('_', '-')}" for k in ("budget", "budget_grid", "lam", "lam_grid", "init_from",
                                                *NEW_RUN_ONLY) if getattr(args, k) is not None]
    if online:
        given = (["--live"] if args.live else []) + live_flags_given(args) + given
        if given:
            raise ConfigError(f"{given[0]}: --resume continues an online run with its own servers and problems; "
                              f"give only --hyperparams with it")
    elif given:
        raise ConfigError(f"{given[0]}: --resume continues a run with its own config (agent, env, target, seed, "
                          f"folder); give only --hyperparams with it")
    try:
        run = api.resume(args.resume, args.hyperparams, progress=not args.no_progress, verbose=args.verbose,
                         command=command)
    except AlreadyFinished as done:
        if online:
            print(f"already finished: {done.run_dir} (nothing to resume; extend it with --hyperparams "
                  f"total_timesteps:N above {done.timesteps})")
            return 0
        more = (f"; to train it on, resume with --hyperparams total_timesteps:N above {done.timesteps}"
                if done.timesteps is not None else "")
        print(f"already finished: {done.run_dir} (nothing to resume; export it with python -m "
              f"trim_rl.export{more})")
        return 0
    print(f"run: {run.path}")
    return 0
