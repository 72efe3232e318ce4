"""Install a run's policy as a deployment checkpoint (``trim_rl.export`` and ``python -m trim_rl.export``).

A finished run holds its calibrated policy in ``RUN_DIR/policy/`` (weights + policy.json with the
requested budget, the price and the spend measured); export checks it (format, sha256, network) and
installs a copy at ``--out`` atomically.  ``--out`` may be empty, absent or an older checkpoint
holding nothing else (replaced, and said so); any other folder, and a checkpoint that also holds
other files (notes, an evaluation report), is refused naming them, so export never deletes a file
that is not its own.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from trim_rl.agents.checkpoint import META, write_folder, write_network_checkpoint
from trim_rl.envs.observations import make_builder
from trim_rl.training.config import agent_from_dict
from trim_rl.training.ppo_stage import actor_net, network_meta
from trim_rl.training.recipe import family_of, recipe_meta


def _run_config(run_dir: Path) -> dict:
    """The run's ``config.yml``; a damaged one is a ``ValueError`` naming it."""
    from trim_rl.configs import load_yaml_file

    cfg_path = run_dir / "config.yml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (config.yml missing)")
    cfg = load_yaml_file(cfg_path)
    for key in ("agent", "target"):
        if not isinstance(cfg.get(key) or {}, dict):
            raise ValueError(f"{cfg_path}: {key}: expected a mapping (not a config written by train.py)")
    return cfg


def export_run(run_dir: str | Path, out: str | Path, which: str = "best") -> Path:
    """Install the run's policy at ``out`` (``which``: ``best``, the finished calibrated policy, or
    ``last``, PPO's last actor as it is, uncalibrated, for inspection)."""
    if which not in ("best", "last"):  # anything else would install the best policy without a word
        raise ValueError(f"--which: expected best or last, got {which!r}")
    run_dir, out = Path(run_dir), Path(out)
    cfg = _run_config(run_dir)
    here, there = run_dir.resolve(), out.resolve()
    if there == here or here in there.parents:
        # e.g. RUN/policy: --which last would replace the run's calibrated policy by its raw actor
        raise ValueError(f"--out {out}: inside the run folder {run_dir}, whose files are the run's record; "
                         f"install the checkpoint outside it")
    if (cfg.get("agent") or {}).get("algo") == "pomdp":
        if which == "last":
            raise ValueError(f"--which last: {run_dir} is a TRIM-POMDP run, which has no PPO actor; export it "
                             f"without --which")
        return _copy_artifact(run_dir, out, ["policy.npz"], check="pomdp")
    if which == "last":
        return _export_last(run_dir, out, cfg)
    src = run_dir / "policy"
    if not (src / META).is_file():
        raise FileNotFoundError(f"{src}: the run has no finished policy (it stopped early: resume it with "
                                f"train.py --resume {run_dir}, or export --which last)")
    return _copy_artifact(src, out, ["model.safetensors"], check="network")


def _copy_artifact(src: Path, out: Path, files: list[str], check: str) -> Path:
    """Copy a checked checkpoint folder's files to ``out`` with policy.json's ``name`` set to out's."""
    if check == "pomdp":
        # trim_rl.agents.pomdp imports scipy
        from trim_rl.agents.pomdp.policy import load_pomdp

        load_pomdp(src)  # refuses a missing, foreign or altered artifact
    else:
        # trim_rl.agents.exported imports torch
        from trim_rl.agents.exported import ExportedPolicy

        ExportedPolicy(src)
    meta = json.loads((src / META).read_text(encoding="utf-8"))
    meta["name"] = out.name

    def fill(tmp: Path) -> list[str]:
        for f in files:
            shutil.copyfile(src / f, tmp / f)
        (tmp / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        return [*files, META]

    path, replaced = write_folder(out, fill)
    if replaced:
        print(f"replaced the checkpoint in {out}", file=sys.stderr)
    return path


def _export_last(run_dir: Path, out: Path, cfg: dict) -> Path:
    from sb3_contrib import MaskablePPO

    zip_path = run_dir / "model.zip"
    if not zip_path.is_file():
        raise FileNotFoundError(f"{zip_path}: missing (the run has no PPO state)")
    if not cfg.get("agent"):
        raise ValueError(f"{run_dir / 'config.yml'}: agent: missing (not a config written by train.py)")
    agent = agent_from_dict(cfg["agent"], str(run_dir / "config.yml"))
    model = MaskablePPO.load(zip_path, device="cpu")  # our own run's file, written by train.py
    meta = {"family": family_of(agent), "recipe": recipe_meta(agent),
            "observation": make_builder(agent.obs, agent.budget_conditioned).config(),
            "lam": (cfg.get("target") or {}).get("lam"), "lam_range": agent.lam_range if agent.budget_conditioned else None,
            "network": network_meta(agent.obs, agent.budget_conditioned, agent.policy_kwargs),
            "source": {"run": str(run_dir), "model": "model.zip", "git": cfg.get("git"), "seed": cfg.get("seed"),
                       "timesteps": int(model.num_timesteps), "init_from": agent.init_from},
            "validation": None, "note": "PPO's last actor, not calibrated to a budget"}
    return write_network_checkpoint(actor_net(model, agent), meta, out)
