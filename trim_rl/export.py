"""``python -m trim_rl.export RUN_DIR --out checkpoints/NAME``: a deployment checkpoint from a run."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

FAMILIES = {"agg": "TRIM-Agg", "seq": "TRIM-Seq"}
# SB3 actor parameter prefixes and their names in PolicyNet (export reads them, --init-from writes them)
ACTOR_PREFIXES = (("features_extractor.encoder.", "extractor."), ("mlp_extractor.policy_net.", "pi."),
                  ("action_net.", "action."))


def actor_key(sb3_name: str) -> str | None:
    """The PolicyNet name of an SB3 policy parameter, or None where it is not part of the actor."""
    for sb3_prefix, ours in ACTOR_PREFIXES:
        if sb3_name.startswith(sb3_prefix):
            return ours + sb3_name[len(sb3_prefix):]
    return None


def _install(tmp: Path, out: Path, files: list[str]) -> None:
    """Make the finished temporary folder readable and move it onto ``out`` (replacing it)."""
    for name in files:
        os.chmod(tmp / name, 0o644)
    os.chmod(tmp, 0o755)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)


def export_run(run_dir: str | Path, out: str | Path, which: str = "best") -> Path:
    """Write ``model.safetensors`` + ``policy.json`` (+ the run's validation figures) to ``out``."""
    import sb3_contrib
    import stable_baselines3
    import torch
    import yaml

    from trim_rl import __version__
    from trim_rl.agents.networks import PolicyNet
    from trim_rl.envs.observations import make_builder

    run_dir, out = Path(run_dir), Path(out)
    cfg_path = run_dir / "config.yml"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (config.yml missing)")
    cfg = yaml.safe_load(cfg_path.read_text())
    if cfg["agent"].get("algo") == "pomdp":
        return _export_pomdp(run_dir, out)
    zip_path = run_dir / ("best_model.zip" if which == "best" and (run_dir / "best_model.zip").exists() else "model.zip")
    if not zip_path.exists():
        raise FileNotFoundError(f"{zip_path} missing: train the run first")
    from sb3_contrib import MaskablePPO

    model = MaskablePPO.load(zip_path, device="cpu")  # our own run's file, written by train.py
    agent = cfg["agent"]
    pk = agent.get("policy_kwargs", {})
    builder = make_builder(agent["obs"], bool(agent.get("budget_conditioned", False)))
    net_cfg = {"obs_dim": int(builder.space.shape[-1]) if agent["obs"] == "agg" else int(builder.space.shape[-1]),
               "net_arch": list(pk.get("net_arch", [64, 64])), "activation": pk.get("activation", "tanh"),
               "encoder": dict(pk.get("encoder", {})) if agent["obs"] == "seq" else None}
    net = PolicyNet(agent["obs"], net_cfg["obs_dim"], net_cfg["net_arch"], net_cfg["activation"], net_cfg["encoder"])
    mapped = {key: v for k, v in model.policy.state_dict().items() if (key := actor_key(k))}
    net.load_state_dict(mapped)  # strict: every actor weight must be present
    best = run_dir / "best.json"
    meta = {
        "family": FAMILIES[agent["obs"]] + (" (budget-conditioned)" if agent.get("budget_conditioned") else "")
        + (" (fine-tuned)" if agent.get("init_from") else ""),  # its own frontier in evaluate.py
        "observation": builder.config(),
        "lam": None if agent.get("budget_conditioned") else float(cfg["lam"]),
        "lam_range": list(agent.get("lam_range", [])) if agent.get("budget_conditioned") else None,
        "eval_lams": list(cfg["env"].get("lam_grid", [])),
        "network": net_cfg,
        "versions": {"trim_rl": __version__, "torch": str(torch.__version__),
                     "stable_baselines3": stable_baselines3.__version__, "sb3_contrib": sb3_contrib.__version__},
        "source": {"run": str(run_dir), "model": zip_path.name, "git": cfg.get("git"), "seed": cfg.get("seed"),
                   "env": cfg["env"].get("name"), "train": cfg["env"].get("train"),
                   "timesteps": int(model.num_timesteps),
                   "init_from": agent.get("init_from")},
        "validation": json.loads(best.read_text()) if best.exists() else None,
    }
    return write_checkpoint(net, meta, out)


def write_checkpoint(net, meta: dict, out: str | Path) -> Path:
    """``model.safetensors`` (the :class:`~trim_rl.agents.networks.PolicyNet` weights) and ``policy.json``
    (``meta`` plus format, name, weights file, sha256 and ``normalization``), written into a temporary
    folder beside ``out`` and moved onto it at the end."""
    from safetensors.torch import save_file

    from trim_rl.agents.exported import FORMAT, WEIGHTS, sha256_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)  # the temporary folder lives beside out (same file system)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        weights = tmp / WEIGHTS
        save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(weights))
        full = {"format": FORMAT, **meta, "name": out.name,
                "normalization": None,  # the observation builders scale features; no running statistics
                "weights": WEIGHTS, "sha256": sha256_file(weights)}
        (tmp / "policy.json").write_text(json.dumps(full, indent=1) + "\n", encoding="utf-8")
        _install(tmp, out, [weights.name, "policy.json"])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _export_pomdp(run_dir: Path, out: Path) -> Path:
    """A TRIM-POMDP run already holds its artifact: copy policy.json (named after ``out``) and
    policy.npz (sha256 checked)."""
    from trim_rl.agents.pomdp.policy import load_pomdp

    load_pomdp(run_dir)  # refuses a missing, foreign or altered artifact
    out.parent.mkdir(parents=True, exist_ok=True)  # the temporary folder lives beside out (same file system)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copyfile(run_dir / "policy.npz", tmp / "policy.npz")
        meta = json.loads((run_dir / "policy.json").read_text(encoding="utf-8"))
        meta["name"] = out.name
        (tmp / "policy.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        _install(tmp, out, ["policy.json", "policy.npz"])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trim_rl.export",
                                 description="Export a trained run as a deployment checkpoint: model.safetensors + "
                                             "policy.json (observation builder, lambda, network, versions, sha256), "
                                             "loadable with torch alone (trim_rl.agents.exported.load_checkpoint).")
    ap.add_argument("run_dir", help="run folder written by train.py")
    ap.add_argument("--out", required=True, help="checkpoint folder to write (replaced atomically)")
    ap.add_argument("--which", choices=["best", "last"], default="best",
                    help="best validation model (default) or the last one")
    args = ap.parse_args(argv)
    print(f"checkpoint: {export_run(args.run_dir, args.out, args.which)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
